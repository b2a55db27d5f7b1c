"""`moebench --help`, `-h`, a bare `moebench`, and every subcommand's --help: they print, never crash
(a bare `%` in a help string once crashed all of them), and every subcommand has a description."""

from __future__ import annotations

import argparse

import pytest
from cli_helpers import run_main, run_process

from moebench.cli import COMMANDS, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_registered_with_a_description():
    subs = _subparsers()
    assert set(subs) == set(COMMANDS)
    for name, sub in subs.items():
        assert sub.description and len(sub.description) > 40, name


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_prints(command, capsys):
    outcome = run_main([command, "--help"], capsys)
    assert outcome.rc == 0 and not outcome.err
    assert outcome.out.startswith(f"usage: moebench {command}")
    description = _subparsers()[command].description.split()[0]
    assert description in outcome.out  # the description is shown, not only the options
    assert max(map(len, outcome.out.splitlines())) <= 100  # argparse wraps at the terminal width


@pytest.mark.parametrize("argv", [["--help"], ["-h"]])
def test_top_level_help_lists_every_command(argv, capsys):
    outcome = run_main(argv, capsys)
    assert outcome.rc == 0
    for command in COMMANDS:
        assert f"    {command} " in outcome.out


def test_entry_point_help_bare_and_version():
    """The real entry point (a subprocess): --help and -h exit 0, a bare `moebench` prints the help
    and exits 2, --version prints the version."""
    helped = run_process(["--help"])
    assert helped.rc == 0 and "commands:" in helped.out and not helped.err
    bare = run_process([])
    assert bare.rc == 2 and "commands:" in bare.out and "Traceback" not in bare.err
    version = run_process(["--version"])
    assert version.rc == 0 and version.out.startswith("moebench ")
