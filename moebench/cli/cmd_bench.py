"""`moebench bench`: time every available implementation per (preset, T), with parity, ceilings
and speedups; write long-format rows to a CSV and print the comparison table.

Defaults: on CUDA the five real presets x T in {1,16,128,1024,4096,16384} in bf16; on the CPU the
small presets x T in {1,16,128} in fp32 (bf16 matmuls are slow on CPUs), without the Triton
implementations (their interpreter's timings are meaningless; name them with --impl to force).

Timing: median, p20, p80 and the sample count per cell. On the CPU one thread by default, timed
with the process's CPU time (time other jobs hold the core is left out), sampled until the median is
known within 2% (or 3 s per cell). Weight-bound cells (FLOPs per weight byte below the
ridge point of the ceilings measured in the same run) are timed with the last-level cache flushed
before each sample (cache=cold). A row above 100% of a measured ceiling is marked invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

import torch
from tabulate import tabulate

from moebench.bench import (
    STATUS_INVALID,
    STATUS_OK,
    BenchOptions,
    count_steps,
    default_baseline,
    run_bench,
    select_impls,
)
from moebench.ceilings import measure_ceilings
from moebench.cli.common import (
    add_problem_args,
    add_quant_arg,
    impl_name,
    nonneg_int,
    positive_int,
    positive_int_csv,
    prepare_device_arg,
    resolve_specs,
)
from moebench.coldcache import CACHE_MODES
from moebench.ep import bench as ep_bench
from moebench.presets import REAL_PRESETS, SMALL_PRESETS
from moebench.report.tables import WIDTH, comparison_tables, star
from moebench.results import default_path, write_rows
from moebench.spec import dtype_name

DEFAULTS = {
    "cuda": {"presets": REAL_PRESETS, "dtypes": ("bf16",), "tokens": [1, 16, 128, 1024, 4096, 16384]},
    "cpu": {"presets": SMALL_PRESETS, "dtypes": ("fp32",), "tokens": [1, 16, 128]},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time implementations per (preset, T): speedups, TFLOP/s, %% of the measured ceilings",
        description=__doc__,
    )
    add_problem_args(p, default_presets="cuda: the real presets; cpu: " + ", ".join(SMALL_PRESETS))
    add_quant_arg(p)
    p.add_argument(
        "--tokens", type=positive_int_csv, default=None, help="token counts (default cuda: 1..16384, cpu: 1,16,128)"
    )
    p.add_argument(
        "--baseline", type=impl_name, default=None, help="implementation the speedups divide by (default: naive_loop)"
    )
    p.add_argument("--out", default=None, help="CSV to write (default: ./moebench-results/bench-<device>-<date>.csv)")
    p.add_argument("--no-graph", action="store_true", help="CUDA: time eagerly only, no CUDA-graph replays")
    p.add_argument("--reps", type=positive_int, default=None, help="timed runs per measurement (default: adaptive)")
    p.add_argument("--warmup", type=nonneg_int, default=None, help="warm-up runs per measurement")
    p.add_argument("--seed", type=int, default=None, help="fix the input seeds (default: fresh seeds, recorded)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU: torch threads (default 1: steady timings; more: wall-clock timing; recorded per row)",
    )
    p.add_argument(
        "--cache",
        choices=CACHE_MODES,
        default="auto",
        help="auto: cold (last-level cache flushed before each sample) for weight-bound cells, warm otherwise",
    )
    p.add_argument("--quick", action="store_true", help="smaller ceiling measurements (for tests and smoke runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    ep_bench.add_args(p)
    p.set_defaults(handler=run)


def _progress(total: int, enabled: bool):
    """A rich progress bar on stderr (a no-op object when disabled)."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    progress.add_task("bench", total=total)
    return progress


def warn_if_busy(device: str) -> None:
    """Wall-clock CPU timings (more than one thread) mean little while other jobs compete for the cores."""
    if device != "cpu" or torch.get_num_threads() == 1 or not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.75 * cores:
        print(f"warning: load average {load:.1f} on {cores} cores: wall-clock timings will be noisy (--threads 1)")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    device = prepare_device_arg(args.device)
    threads = args.threads or (1 if device == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    defaults = DEFAULTS[device]
    specs = resolve_specs(args, default_presets=defaults["presets"], default_dtypes=defaults["dtypes"])
    tokens = args.tokens or defaults["tokens"]
    ep_bench.check_args(args)
    if args.ep is not None:  # expert-parallel: moebench.ep.bench measures and writes its own rows
        return ep_bench.run(args, device, specs, tokens, Path(args.out) if args.out else default_path("bench", device))
    baseline = args.baseline or default_baseline()
    selection = select_impls(args.impl, device, baseline)
    options = BenchOptions(
        use_graph=not args.no_graph, warmup=args.warmup, reps=args.reps, seed=args.seed, cache=args.cache
    )

    dtypes = list(dict.fromkeys(dtype_name(s.dtype) for s in specs))
    print(f"moebench bench on {device} (torch {torch.__version__}): {len(specs)} problem(s) x T={tokens}", flush=True)
    warn_if_busy(device)
    ceilings = measure_ceilings(device, tuple(dtypes), quick=args.quick)
    print(f"ceilings: {ceilings.describe()}")
    if args.cache == "auto":
        ridges = ", ".join(f"{d} {ceilings.ridge(d):.3g}" for d in dtypes)
        print(f"cache: cold for cells below the ridge point ({ridges} FLOP/byte), warm above")
    sys.stdout.flush()

    rows: list[dict] = []
    progress = None if args.no_progress else _progress(count_steps(specs, tokens, selection), True)
    out_path = Path(args.out) if args.out else default_path("bench", device)
    try:
        if progress is None:
            result = run_bench(
                specs, tokens, selection, device, baseline=baseline, ceilings=ceilings, options=options, rows=rows
            )
        else:
            with progress:
                task, done = progress.tasks[0].id, [0]

                def step(text: str) -> None:  # called before each measurement
                    progress.update(task, description=text, completed=done[0])
                    done[0] += 1

                result = run_bench(
                    specs, tokens, selection, device, baseline=baseline, ceilings=ceilings, options=options,
                    on_step=step, rows=rows,
                )  # fmt: skip
    except KeyboardInterrupt:
        ep_bench.single_device(rows)
        if rows:
            write_rows(out_path, rows)
            print(f"\nmoebench bench: interrupted; {len(rows)} rows so far written to {out_path}", file=sys.stderr)
            return 130
        raise

    ep_bench.single_device(rows)
    if rows:
        write_rows(out_path, rows)
    for table in comparison_tables(rows, baseline=baseline, fmt="simple", mark=star):
        print(f"\n{table.title}\n{table.text}\n" + textwrap.fill(table.legend, WIDTH, break_on_hyphens=False))
    left_out = [[n, "unavailable", r] for n, r in selection.unavailable]
    left_out += [[n, "skipped", r] for n, r in selection.skipped]
    left_out += [[n, "skipped", r] for n, r in result.unsupported]
    if left_out:
        print(f"\nnot run on {device}:")
        print(tabulate(left_out, headers=["implementation", "status", "reason"], maxcolwidths=[None, None, 80]))
    for row in rows:
        if row["status"] != STATUS_OK:
            print(f"{row['status'].upper()}: {row['impl']} {row['preset']} {row['dtype']} T={row['T']}: {row['note']}")
    wall = time.perf_counter() - started
    summary = f"{len(rows)} measurement(s) in {wall:.1f} s"
    print(f"\n{summary}; " + (f"wrote {out_path}" if rows else "nothing measured, no file written"))
    invalid = sum(r["status"] == STATUS_INVALID for r in rows)
    if invalid:
        print(f"{invalid} row(s) above a ceiling measured in the same run: invalid, not results (status column)")
    problems = sum(r["status"] not in (STATUS_OK, STATUS_INVALID) for r in rows)
    if problems:
        print(f"{problems} row(s) failed parity or errored (status column)")
    return 1 if problems else 0
