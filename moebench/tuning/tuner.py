"""`moebench tune` orchestration: plan jobs, skip what is recorded, run them, merge the results.

For each implementation with tunable kernels, each spec and each token bucket, one job tunes the
kernels not yet recorded (see moebench.tuning.job). Results are merged into the config files as
each job finishes, so an interrupted run resumes where it stopped (recorded buckets are skipped
unless force=True).
"""

from __future__ import annotations

import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from moebench.errors import MoEInputError
from moebench.spec import MoESpec, dtype_name
from moebench.tuning import cache, files
from moebench.tuning.distributed import make_executor
from moebench.tuning.job import JobResult, TuneJob
from moebench.tuning.plan import TuneRow, plan, tunable_impls
from moebench.tuning.precompile import auto_workers
from moebench.tuning.space import tunable


def merge(result: JobResult, out_dir: Path, command: str) -> list[TuneRow]:
    """Write a finished job's winners into their config files; the summary rows of the job."""
    job, rows = result.job, []
    if result.error is not None:
        for kernel in job.kernels:
            rows.append(TuneRow(job.impl, kernel, job.spec, job.bucket, "failed", detail=result.error))
        return rows
    meta = files.run_meta(result.device, command)
    for outcome in result.outcomes:
        path = cache.config_path(out_dir, result.device["key"], job.impl, outcome.kernel, job.spec)
        row = TuneRow(job.impl, outcome.kernel, job.spec, job.bucket, "failed", path=path)
        if outcome.skipped:
            row.status, row.detail = "skipped", outcome.skipped
        elif outcome.entry is None:
            row.detail = outcome.error or "no result"
        else:
            sig = cache.signature(tunable(job.impl, outcome.kernel), job.spec)
            cache.record_buckets(path, sig, meta, {job.bucket: outcome.entry})
            entry = outcome.entry
            row.status, row.config, row.ms = "tuned", entry["config"], entry["ms"]
            row.default_ms, row.tried, row.rejected = entry["default_ms"], entry["candidates_tried"], entry["rejected"]
        rows.append(row)
    return rows


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[best]}"),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _best_text(ms: float | None, config: dict | None) -> str:
    """The fastest config timed so far (its parity check comes at the end of the search)."""
    if ms is None:
        return ""
    return f"fastest {ms:.4g} ms " + " ".join(f"{k}={v}" for k, v in (config or {}).items())


def tune(
    specs: Sequence[MoESpec],
    *,
    impls: Sequence[str] | None = None,
    buckets: Sequence[int],
    device: str,
    out_dir: str | Path,
    budget_s: float | None = None,
    max_configs: int | None = None,
    force: bool = False,
    gpus: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    command: str | None = None,
    worker_setup: Sequence[str] = (),
    compile_workers: int | None = None,
) -> list[TuneRow]:
    """Tune and record; returns one row per (impl, kernel, spec, bucket).

    compile_workers: processes per tuning process that compile candidates ahead of their timing
    (moebench.tuning.precompile); None: the CPU cores left per GPU worker, at most 8 (0 on cpu).

    worker_setup: "module:function" items run in each worker before its jobs, for implementations
    registered at runtime (plugins registered through entry points need nothing).
    """
    out_dir = Path(out_dir)
    command = command if command is not None else " ".join(shlex.quote(a) for a in ["moebench", *sys.argv[1:]])
    names = tunable_impls(impls, device)
    rows: list[TuneRow] = []
    bar = _progress(progress)
    current: dict = {}

    def on_trial(kernel, trial, best, n, planned) -> None:
        task = current.get("task")
        if task is not None:
            desc = current["job"].describe(kernel)
            best_text = _best_text(best.ms, best.config) if best else ""
            bar.update(task, description=desc, completed=n, total=planned, best=best_text)

    with bar, make_executor(device, gpus=gpus, ray_address=ray_address, on_trial=on_trial) as executor:
        where = executor.device_info()
        planned = plan(
            specs,
            names,
            buckets,
            device=device,
            device_key=where["key"],
            out_dir=out_dir,
            force=force,
            budget_s=budget_s,
            max_configs=max_configs,
            setup=tuple(worker_setup),
            compile_workers=compile_workers if compile_workers is not None else auto_workers(device, gpus),
        )
        rows += planned.rows
        overall = bar.add_task(f"jobs on {where['key']}", total=len(planned.jobs), best="")

        def on_start(job: TuneJob) -> None:
            if "task" in current:
                bar.remove_task(current["task"])
            current["job"] = job
            current["task"] = bar.add_task(job.describe(), total=None, best="")

        def on_result(result: JobResult) -> None:
            if result.device.get("key") not in (where["key"], "unknown", *current.setdefault("other_keys", set())):
                current["other_keys"].add(result.device.get("key"))
                warnings.warn(
                    f"a worker ran on {result.device.get('key')}, not {where['key']}: its configs are filed "
                    "under its own device key",
                    cache.TuningCacheWarning,
                    stacklevel=2,
                )
            if result.precompile_errors and not current.get("precompile_warned"):
                current["precompile_warned"] = True  # once: the timing loop rejects those configs anyway
                warnings.warn(
                    f"precompile: {len(result.precompile_errors)} failure(s) in {result.job.describe()}, first: "
                    f"{result.precompile_errors[0][:300]}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            job_rows = merge(result, out_dir, command)
            rows.extend(job_rows)
            tuned = [r for r in job_rows if r.status == "tuned"]
            last = _best_text(tuned[-1].ms, tuned[-1].config) if tuned else (result.error or "")
            bar.update(overall, advance=1, best=f"last: {result.job.describe()} {last}"[:200])

        executor.run(planned.jobs, on_result, on_start)
    return sorted(rows, key=lambda r: (r.impl, r.kernel, r.spec.describe(), r.bucket))


def summary_table(rows: Sequence[TuneRow]) -> tuple[list[list], list[str]]:
    """(rows, headers) for tabulate."""
    out = []
    for r in rows:
        e, k, h, i = r.spec.shape
        out.append(
            [
                r.impl,
                r.kernel,
                f"{e},{k},{h},{i}",
                dtype_name(r.spec.dtype) + ("" if r.spec.quant is None else f" {r.spec.quant}"),
                r.bucket,
                r.status,
                "" if r.ms is None else f"{r.ms:.4g}",
                "" if r.default_ms is None else f"{r.default_ms:.4g}",
                "" if r.speedup is None else f"{r.speedup:.2f}x",
                r.tried or "",
                r.rejected or "",
                "" if r.config is None else r.config,
                r.detail[:120],
            ]
        )
    headers = ["impl", "kernel", "E,k,H,I", "dtype", "T", "status", "ms", "default ms", "speedup", "tried"]
    return out, [*headers, "rejected", "config", "detail"]


def resolve_out_dir(out_dir: str | Path | None) -> Path:
    """--out-dir, else $MOEBENCH_CONFIG_DIR, else the shipped folder (editable install)."""
    if out_dir is not None:
        return Path(out_dir)
    default = files.default_out_dir()
    if default is None:
        raise MoEInputError(
            "--out-dir: no results/configs folder here (moebench is not an editable install); pass "
            f"--out-dir DIR and set {cache.CONFIG_DIR_ENV}=DIR so lookups find the configs"
        )
    return default
