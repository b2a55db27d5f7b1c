"""One tuning job: the kernels of one implementation, for one spec and one token bucket, on the
device of the process that runs it (in the `moebench tune` process, a worker process per GPU, or
a Ray task). Jobs and results are plain picklable records.

Each candidate is timed as the whole layer forward, the way the benchmark times it
(moebench.timing.time_fn: warm-up, CUDA graph when the implementation is graph-safe, median),
with only that kernel's config varied; kernels of the backward pass are timed as forward +
backward. The fastest candidates are then checked against the fp64 reference (outputs, or
gradients for backward kernels) at the bucket's check token counts, with NaN-poisoned outputs and
scratch memory as in the parity gate; the first that passes wins.

Kernels are tuned in registration order; a kernel's winner is used while the later ones are tuned,
and kernels not yet tuned run their defaults, all passed explicitly (MOEBENCH_PIN_CONFIG and
cached configs do not leak into a tuning run).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from moebench import registry
from moebench.presets import spec_label
from moebench.spec import MoESpec, dtype_name
from moebench.tuning.device import device_info
from moebench.tuning.precompile import Precompiler, precompile_available
from moebench.tuning.search import Search, SearchResult, Trial
from moebench.tuning.space import tunable, tunables
from moebench.tuning.trial import ForwardCheck, GradCheck, Timer, tuning_weights


@dataclass(frozen=True)
class TuneJob:
    impl: str
    spec: MoESpec
    bucket: int
    kernels: tuple[str, ...]  # to tune, in order
    device: str  # "cpu" or "cuda" (a worker sees one GPU)
    fixed: dict = field(default_factory=dict)  # kernel -> config recorded earlier (resumed runs)
    budget_s: float | None = None  # seconds of timing per kernel search
    max_configs: int | None = None  # configs timed per kernel search
    setup: tuple[str, ...] = ()  # "module:function" run first in a worker (impls registered at runtime)
    setup_paths: dict = field(default_factory=dict)  # module -> file, when a worker cannot import it by name
    compile_workers: int = 0  # processes compiling candidates ahead of timing (moebench.tuning.precompile)

    def describe(self, kernel: str | None = None) -> str:
        """Short: 'triton_grouped/gate_up mixtral-8x7b bf16 T=1024'."""
        name = self.impl if kernel is None else f"{self.impl}/{kernel}"
        return f"{name} {spec_label(self.spec)} {dtype_name(self.spec.dtype)} T={self.bucket}"


@dataclass
class KernelOutcome:
    kernel: str
    entry: dict | None = None  # what is recorded for the bucket; None when nothing passed
    error: str | None = None
    skipped: str | None = None  # why the kernel does not run at this bucket (empty space, inactive)


@dataclass
class JobResult:
    job: TuneJob
    device: dict  # DeviceInfo.as_dict() of the device that ran it
    outcomes: list[KernelOutcome] = field(default_factory=list)
    error: str | None = None  # the job failed as a whole (nothing recorded)
    seconds: float = 0.0
    precompiled: int = 0  # kernel launches compiled ahead by the precompile workers
    precompile_errors: list[str] = field(default_factory=list)


# -- worker preparation -----------------------------------------------------------------------


def run_setup(setup: tuple[str, ...], paths: dict) -> None:
    """Import each "module:function" (from its file when not importable by name) and call it."""
    for item in setup:
        module_name, _, func_name = item.partition(":")
        if module_name in sys.modules:
            module = sys.modules[module_name]
        else:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                if module_name not in paths:
                    raise
                spec = importlib.util.spec_from_file_location(module_name, paths[module_name])
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
        if func_name:
            getattr(module, func_name)()


# -- one job ----------------------------------------------------------------------------------


def _entry(result: SearchResult, checked: tuple[int, ...], backward: bool, cache: str) -> dict:
    return {
        "config": result.best,
        "ms": round(result.best_ms, 6),
        "default_ms": None if result.default_ms is None else round(result.default_ms, 6),
        "timed": "forward+backward" if backward else "forward",
        "cache": cache,  # cold: the last-level cache flushed before every sample (moebench.coldcache)
        "candidates_tried": result.tried,
        "rejected": len(result.rejected),
        "stopped_by": result.stopped_by,
        "checked_tokens": list(checked),
    }


def _no_winner(result: SearchResult) -> str:
    why = "; ".join(f"{cfg}: {reason}" for cfg, reason in result.rejected[:3])
    return f"no config passed the parity check ({result.tried} tried; {why})"


def run_job(job: TuneJob, on_trial: Callable[[str, Trial, Trial | None, int, int], None] | None = None) -> JobResult:
    """Tune job.kernels for job.bucket; on_trial(kernel, trial, best, n, planned) reports progress."""
    start = time.perf_counter()
    run_setup(job.setup, job.setup_paths)
    device = torch.device(job.device)
    result = JobResult(job, device_info(device).as_dict())
    info = registry.get(job.impl)
    spec, bucket = job.spec, job.bucket
    weights = tuning_weights(spec, device)
    timer = Timer(info, weights, bucket, device)
    checks = {False: ForwardCheck(info, weights, bucket, device), True: GradCheck(info, weights, bucket, device)}
    chosen = {t.kernel: t.default(spec, bucket) for t in tunables(job.impl)}
    chosen.update(job.fixed)
    workers = job.compile_workers if device.type == "cuda" and precompile_available() else 0
    precompiler = Precompiler(job.impl, spec, bucket, workers)
    _tune_kernels(job, result, chosen, timer, checks, precompiler, on_trial)
    result.precompiled, result.precompile_errors = precompiler.compiled, precompiler.errors
    result.seconds = time.perf_counter() - start
    return result


def _tune_kernels(job: TuneJob, result: JobResult, chosen: dict, timer, checks, precompiler, on_trial) -> None:
    """Search job.kernels in order, each with the winners so far; outcomes go into `result`."""
    spec, bucket = job.spec, job.bucket
    reference_errors: dict[bool, str] = {}
    for kernel in job.kernels:
        kernel_def = tunable(job.impl, kernel)
        space = kernel_def.space(spec, bucket)
        if not space:
            result.outcomes.append(KernelOutcome(kernel, skipped=f"no candidates at T={bucket}"))
            continue
        if kernel_def.active is not None and not kernel_def.active(chosen):
            result.outcomes.append(KernelOutcome(kernel, skipped="does not run under the chosen configs"))
            continue
        backward = kernel_def.backward
        check = checks[backward]
        if backward not in reference_errors:
            try:
                check.prepare()
                reference_errors[backward] = ""
            except Exception as exc:
                reference_errors[backward] = f"fp64 reference failed: {type(exc).__name__}: {exc}"
        if reference_errors[backward]:
            result.outcomes.append(KernelOutcome(kernel, error=reference_errors[backward]))
            continue
        timed = timer.backward_ms if backward else timer.forward_ms

        def measure(config: dict, kernel: str = kernel, timed=timed) -> float:
            return timed({**chosen, kernel: config})

        def accept(config: dict, kernel: str = kernel, check=check) -> str | None:
            return check({**chosen, kernel: config})

        def report(trial: Trial, best: Trial | None, n: int, planned: int, kernel: str = kernel) -> None:
            if on_trial is not None:
                on_trial(kernel, trial, best, n, planned)

        search = Search(
            space, chosen[kernel], measure, budget_s=job.budget_s, max_configs=job.max_configs, on_trial=report
        )
        precompiler.warm([{**chosen, kernel: config} for config in search.first_configs()], backward=backward)
        found = search.run(accept)
        if found.best is None:
            result.outcomes.append(KernelOutcome(kernel, error=_no_winner(found)))
            continue
        chosen[kernel] = found.best
        result.outcomes.append(KernelOutcome(kernel, entry=_entry(found, check.tokens, backward, timer.cache)))


def failed_result(job: TuneJob, exc: BaseException) -> JobResult:
    """The result of a job that raised (or whose worker died): nothing recorded, the reason kept."""
    detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return JobResult(job, {"key": "unknown"}, error=detail)


def run_job_safely(job: TuneJob, on_trial=None) -> JobResult:
    """run_job, with any failure returned as the job's error (workers must not die on one job)."""
    try:
        return run_job(job, on_trial)
    except Exception as exc:
        return failed_result(job, exc)
