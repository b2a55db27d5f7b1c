"""`moebench bench`: time every available implementation per (preset, T), with parity, ceilings
and speedups; write long-format rows to a CSV and print the comparison table.

Defaults: on CUDA the five real presets x T in {1,16,128,1024,4096,16384} in bf16; on the CPU the
small presets x T in {1,16,128} in fp32 (bf16 matmuls are slow on CPUs), without the Triton
implementations (their interpreter's timings are meaningless; name them with --impl to force).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import sys
import time
from pathlib import Path

import torch
from tabulate import tabulate

from moebench import registry
from moebench.bench import BenchOptions, count_steps, default_baseline, run_bench, select_impls
from moebench.ceilings import measure_ceilings
from moebench.cli.common import add_problem_args, add_quant_arg, int_csv, prepare_device_arg, resolve_specs
from moebench.errors import MoEInputError
from moebench.presets import REAL_PRESETS, SMALL_PRESETS
from moebench.report.tables import comparison_tables, star
from moebench.results import write_rows
from moebench.spec import dtype_name

DEFAULTS = {
    "cuda": {"presets": REAL_PRESETS, "dtypes": ("bf16",), "tokens": [1, 16, 128, 1024, 4096, 16384]},
    "cpu": {"presets": SMALL_PRESETS, "dtypes": ("fp32",), "tokens": [1, 16, 128]},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time implementations per (preset, T): speedups, TFLOP/s, % of ceilings")
    add_problem_args(p, default_presets="cuda: the real presets; cpu: " + ", ".join(SMALL_PRESETS))
    add_quant_arg(p)
    p.add_argument("--tokens", type=int_csv, default=None, help="token counts (default cuda: 1..16384, cpu: 1,16,128)")
    p.add_argument("--baseline", default=None, help="implementation the speedups divide by (default: naive_loop)")
    p.add_argument("--out", default=None, help="CSV to write (default: results/bench-<device>-<date>.csv)")
    p.add_argument("--no-graph", action="store_true", help="CUDA: time eagerly only, no CUDA-graph replays")
    p.add_argument("--reps", type=int, default=None, help="timed runs per measurement (default: timing's default)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs per measurement")
    p.add_argument("--seed", type=int, default=None, help="fix the input seeds (default: fresh seeds, recorded)")
    p.add_argument("--threads", type=int, default=None, help="CPU: torch threads (default: torch's; recorded per row)")
    p.add_argument("--quick", action="store_true", help="smaller ceiling measurements (for tests and smoke runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def default_out_path(device: str) -> Path:
    name = "cpu" if device == "cpu" else torch.cuda.get_device_name()
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"bench-{slug}-{stamp}.csv"


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
    """CPU timings mean little while other jobs compete for the cores: say so up front."""
    if device != "cpu" or not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.75 * cores:
        print(
            f"warning: load average {load:.1f} on {cores} cores: other jobs are running, CPU timings will be noisy "
            "(multi-threaded ops suffer most; --threads 1 is steadier)"
        )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    device = prepare_device_arg(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise MoEInputError(f"--threads: expected a positive int, got {args.threads}")
        torch.set_num_threads(args.threads)
    defaults = DEFAULTS[device]
    specs = resolve_specs(args, default_presets=defaults["presets"], default_dtypes=defaults["dtypes"])
    tokens = args.tokens or defaults["tokens"]
    baseline = args.baseline or default_baseline()
    registry.get(baseline)  # unknown baseline: a clear error before any work
    selection = select_impls(args.impl, device, baseline)
    options = BenchOptions(use_graph=not args.no_graph, warmup=args.warmup, reps=args.reps, seed=args.seed)

    dtypes = list(dict.fromkeys(dtype_name(s.dtype) for s in specs))
    print(f"moebench bench on {device} (torch {torch.__version__}): {len(specs)} problem(s) x T={tokens}")
    warn_if_busy(device)
    ceilings = measure_ceilings(device, tuple(dtypes), quick=args.quick)
    print(f"ceilings: {ceilings.describe()}")
    sys.stdout.flush()

    rows: list[dict] = []
    progress = None if args.no_progress else _progress(count_steps(specs, tokens, selection), True)
    out_path = Path(args.out) if args.out else default_out_path(device)
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
        if rows:
            write_rows(out_path, rows)
            print(f"\ninterrupted: {len(rows)} rows so far written to {out_path}", file=sys.stderr)
        return 130

    if rows:
        write_rows(out_path, rows)
    for table in comparison_tables(rows, baseline=baseline, fmt="simple", mark=star):
        print(f"\n{table.title}\n{table.text}\n{table.legend}")
    left_out = [[n, "unavailable", r] for n, r in selection.unavailable]
    left_out += [[n, "skipped", r] for n, r in selection.skipped]
    left_out += [[n, "skipped", r] for n, r in result.unsupported]
    if left_out:
        print(f"\nnot run on {device}:")
        print(tabulate(left_out, headers=["impl", "", "reason"]))
    problems = [r for r in rows if r["status"] != "ok"]
    for row in problems:
        print(f"{row['status'].upper()}: {row['impl']} {row['preset']} {row['dtype']} T={row['T']}: {row['note']}")
    wall = time.perf_counter() - started
    summary = f"{len(rows)} measurement(s) in {wall:.1f} s"
    print(f"\n{summary}; " + (f"wrote {out_path}" if rows else "nothing measured, no file written"))
    if problems:
        print(f"{len(problems)} row(s) failed parity or errored (status column)")
    return 1 if problems else 0
