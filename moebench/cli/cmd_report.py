"""`moebench report RESULTS.csv [...]`: markdown comparison tables and PNG plots from bench CSVs.

Writes report.md plus speedup-*.png and roofline-*.png into --out (default: a folder next to the
first CSV, named after it: results/bench-x.csv -> results/bench-x-report/). Several CSVs (other
machines, deployed rows from the export helper) are read together; any implementation name works.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moebench.errors import MoEInputError
from moebench.report.markdown import write_report
from moebench.results import read_rows


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="markdown tables and PNG plots from bench CSV files")
    p.add_argument("csv", nargs="+", help="results CSV file(s) written by `moebench bench` (or with deployed rows)")
    p.add_argument("--out", default=None, help="output folder (default: <csv folder>/<csv name>-report/)")
    p.add_argument("--baseline", default=None, help="speedup denominator (default: the CSV's baseline column)")
    p.set_defaults(handler=run)


def default_out_dir(csv_path: Path) -> Path:
    return csv_path.parent / f"{csv_path.stem}-report"


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.csv]
    rows: list[dict] = []
    for path in paths:
        if not path.is_file():
            raise MoEInputError(f"csv: expected an existing results file, got {str(path)!r}")
        rows += read_rows(path)
    if not rows:
        raise MoEInputError(f"csv: no rows in {', '.join(map(str, paths))}")
    out_dir = Path(args.out) if args.out else default_out_dir(paths[0])
    report, plots = write_report(rows, out_dir, [str(p) for p in paths], args.baseline)
    print(f"wrote {report}" + "".join(f"\nwrote {p}" for p in plots))
    return 0
