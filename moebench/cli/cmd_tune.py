"""`moebench tune`: tune every tunable kernel per token bucket, check winners against fp64, record.

Configs land in results/configs/<device key>/ (or --out-dir / $MOEBENCH_CONFIG_DIR); see
results/configs/README.md for the file format and how lookups fall back.
"""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from moebench.cli.common import (
    add_problem_args,
    add_quant_arg,
    nonneg_int,
    positive_float,
    positive_int,
    positive_int_csv,
    prepare_device_arg,
    resolve_specs,
)
from moebench.errors import MoEInputError
from moebench.tuning.buckets import CPU_DEFAULT_BUCKETS, buckets_for


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="autotune kernel configs per GPU, shape, dtype and token bucket (winners pass the parity gate)",
        description=__doc__,
    )
    add_problem_args(p, default_presets="none: name --preset or --shape")
    add_quant_arg(p)
    p.add_argument(
        "--tokens",
        type=positive_int_csv,
        default=None,
        help=f"token counts to tune, each snapped to its log-scale bucket (default: 1..65536 on cuda, "
        f"{','.join(map(str, CPU_DEFAULT_BUCKETS))} on cpu)",
    )
    p.add_argument(
        "--budget",
        type=positive_float,
        default=None,
        help="seconds of timing per (kernel, bucket) search (default: no cap)",
    )
    p.add_argument(
        "--max-configs",
        type=positive_int,
        default=None,
        help="configs timed per (kernel, bucket) search, the default included (default: 64 on cuda, 12 on cpu)",
    )
    p.add_argument(
        "--gpus", type=positive_int, default=None, help="worker processes, one per GPU (default: every visible GPU)"
    )
    p.add_argument(
        "--compile-workers",
        type=nonneg_int,
        default=None,
        help="processes compiling candidates ahead of their timing, per GPU worker "
        "(default: the CPU cores left per GPU, at most 8; 0 on cpu or to switch it off)",
    )
    p.add_argument(
        "--ray-address", default=None, help="run jobs on a Ray cluster (one task per GPU); 'local' starts one here"
    )
    p.add_argument(
        "--out-dir", default=None, help="config folder to write (default: $MOEBENCH_CONFIG_DIR, else results/configs)"
    )
    p.add_argument("--force", action="store_true", help="re-tune buckets already recorded")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from moebench.tuning.tuner import resolve_out_dir, summary_table, tune

    if not args.preset and not args.shape:
        raise MoEInputError("--preset/--shape: name what to tune (e.g. --preset mixtral-8x7b --dtype bf16)")
    device = prepare_device_arg(args.device)
    specs = resolve_specs(args, default_dtypes=("bf16",))
    out_dir = resolve_out_dir(args.out_dir)
    print(f"moebench tune on {device}: {len(specs)} problem(s); configs go to {out_dir}", flush=True)
    rows = tune(
        specs,
        impls=args.impl,
        buckets=buckets_for(args.tokens, device),
        device=device,
        out_dir=out_dir,
        budget_s=args.budget,
        max_configs=args.max_configs if args.max_configs is not None else (64 if device == "cuda" else 12),
        force=args.force,
        gpus=args.gpus,
        ray_address=args.ray_address,
        progress=not args.no_progress and sys.stderr.isatty(),  # no bar drawn into a log
        compile_workers=args.compile_workers,
    )
    if not rows:
        print(f"nothing to tune: no implementation with tunable kernels is available on {device}")
        return 1
    table, headers = summary_table(rows)
    print(tabulate(table, headers=headers))
    failed = [r for r in rows if r.status == "failed"]
    counts = {s: sum(r.status == s for r in rows) for s in ("tuned", "recorded", "skipped", "failed")}
    print(f"\nconfigs in {out_dir}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if device == "cpu":
        print("note: CPU (interpreter) timings only exercise the tuning path; tune on the GPU you deploy on")
    return 1 if failed else 0
