"""`moebench` command line: one entry point, one module per subcommand.

A subcommand module `moebench/cli/cmd_<name>.py` defines `add_parser(subparsers)` which adds its
parser and sets `handler=<function(args) -> int>`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import torch

from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.results import set_command

COMMANDS = ("list", "verify", "bench", "report", "tune", "export", "session")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare_device(device: str) -> str:
    """Validate --device; on the CPU, switch Triton to its interpreter before any kernel loads."""
    if device not in ("cpu", "cuda"):
        raise MoEInputError(f"--device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise MoEInputError("--device: 'cuda' was asked for but torch.cuda.is_available() is False")
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moebench", description="MoE layer implementations: verify, bench, tune, export"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"moebench.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"moebench.cli.cmd_{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_command(["moebench", *(sys.argv[1:] if argv is None else argv)])
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (MoEInputError, UnknownImplementationError) as exc:
        print(f"moebench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
