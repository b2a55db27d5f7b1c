"""`moebench` command line: one entry point, one module per subcommand.

A subcommand module `moebench/cli/cmd_<name>.py` defines `add_parser(subparsers)` which adds its
parser (with `description=`, shown by `moebench <name> --help`) and sets
`handler=<function(args) -> int>`.

Exit codes: 0 success; 1 the run found a failure (parity, an error row); 2 bad input or a run
that cannot happen here (usage errors, CUDA asked for without a GPU, a missing optional package);
130 interrupted (Ctrl-C). Every error is one line on stderr naming the argument, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

from moebench.cli.common import default_device, prepare_device  # noqa: F401  (re-exported for subcommands)
from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.results import set_command

COMMANDS = ("list", "verify", "bench", "report", "tune", "export", "session")

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions keep their paragraphs (and indented example lines as written); paths such as
    ./moebench-results/ are not broken at their hyphens."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for para in textwrap.dedent(text).strip().split("\n\n"):
            if any(line.startswith(" ") for line in para.splitlines()):
                paragraphs.append(textwrap.indent(para, indent))
            else:
                paragraphs.append(textwrap.fill(" ".join(para.split()), width, initial_indent=indent,
                                                subsequent_indent=indent, break_on_hyphens=False))  # fmt: skip
        return "\n\n".join(paragraphs)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`moebench bench: error: argument --reps: ... (see --help)`)
    and the help formatter above for every subcommand."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401  (argparse's hook)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def build_parser() -> argparse.ArgumentParser:
    from moebench import __version__

    parser = Parser(
        prog="moebench",
        description="Pick, tune, verify and ship the MoE layer of a model: implementations behind one registry, "
        "a parity gate against one fp64 reference, benchmarks, reports, autotuning and export.",
        epilog="Run 'moebench COMMAND --help' for a command's options. Output files go to ./moebench-results/ "
        "($MOEBENCH_RESULTS_DIR) unless --out names a path.",
    )
    parser.add_argument("--version", action="version", version=f"moebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"moebench.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"moebench.cli.cmd_{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def _missing_package(exc: ModuleNotFoundError) -> str:
    extras = {"matplotlib": "report", "onnx": "export", "onnxruntime": "export", "onnxscript": "export"}
    extras.update({"triton": "triton", "transformers": "hf", "ray": "dist"})
    root = (exc.name or "").split(".")[0]
    hint = f"pip install 'moebench[{extras[root]}]'" if root in extras else f"pip install {root}"
    return f"needs the optional package {root!r} ({hint})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = "moebench"
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors: argparse has printed its line
            return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else EXIT_USAGE
        set_command(["moebench", *argv])
        if not getattr(args, "handler", None):
            parser.print_help()
            return EXIT_USAGE
        command = f"moebench {args.command}"
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"\n{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MoEInputError, UnknownImplementationError) as exc:
        print(f"{command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "moebench":
            raise
        print(f"{command}: error: {_missing_package(exc)}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    """The `moebench` executable (and `python -m moebench`): main(), then exit with its code.

    After Ctrl-C the process ends at once with 130: a KeyboardInterrupt that landed inside a C
    extension's nested interpreter call (pybind11 eval) leaves CPython marked "interrupted", and a
    normal shutdown would then kill the process with SIGINT instead of exiting 130."""
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
