"""`moebench report RESULTS.csv [...]`: markdown comparison tables and PNG plots from bench CSVs.

Writes report.md plus speedup-*.png and roofline-*.png into --out (default: ./moebench-results/<csv
name>-report/). Only moebench results files are read (their schema_version is checked). Several
files (other runs, deployed rows from `moebench export --bench`) are merged only when they agree on
the device, torch, triton, python and thread count; --allow-mixed reports them anyway, in separate
tables per differing value.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moebench.cli.common import impl_name
from moebench.errors import MoEInputError
from moebench.report.markdown import write_report
from moebench.results import RUN_FIELDS, read_results, results_dir, run_differences


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="markdown tables and PNG plots from bench CSV files", description=__doc__)
    p.add_argument(
        "csv", nargs="+", help="results CSV file(s) written by `moebench bench` or `moebench export --bench`"
    )
    p.add_argument("--out", default=None, help="output folder (default: ./moebench-results/<csv name>-report/)")
    p.add_argument(
        "--baseline", type=impl_name, default=None, help="speedup denominator (default: the CSV's baseline column)"
    )
    p.add_argument(
        "--allow-mixed",
        action="store_true",
        help=f"report runs that differ in {', '.join(RUN_FIELDS)} (as separate tables) instead of refusing",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.csv]
    sources = {str(path): read_results(path) for path in paths}
    rows = [row for rows in sources.values() for row in rows]
    differences = run_differences(sources)
    if differences and not args.allow_mixed:
        raise MoEInputError(
            f"csv: the results come from different runs ({'; '.join(differences)}); "
            "pass --allow-mixed to report them side by side"
        )
    split = tuple(d.split(":")[0] for d in differences)
    out_dir = Path(args.out) if args.out else results_dir() / f"{paths[0].stem}-report"
    report, plots = write_report(rows, out_dir, list(sources), args.baseline, split=split)
    print(f"wrote {report}" + "".join(f"\nwrote {p}" for p in plots))
    return 0
