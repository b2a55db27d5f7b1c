"""Compile the candidates a search is about to time, in parallel, before it times them.

On a GPU, compiling a Triton kernel (Triton's passes, then ptxas) takes about as long as timing
it, and the search compiles every candidate one after another: most of a tuning run's wall time.
Before each kernel's search, the candidates it will time first (the default and one per tile
shape: moebench.tuning.search.Search.first_configs) are compiled by a pool of worker processes.
Each worker records the layer's launches for one config on `meta` tensors
(moebench.compile_check.record_launches: real shapes, no memory, nothing computed) and calls each
kernel's `warmup`, which specialises the arguments the way a launch does and compiles for the
current GPU into Triton's on-disk cache; the timing run then loads the binary from there.

Best effort: a config that fails to compile here fails again when timed, and is rejected there;
pool failures only cost the time saved. Implementations without recorded launches (only
triton_grouped and block_sparse have them) are not precompiled. On the CPU (the Triton
interpreter) there is nothing to compile.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

import torch

from moebench.kernels.common.interpreter import interpreting
from moebench.spec import MoESpec
from moebench.tuning.device import visible_gpus

MAX_AUTO_WORKERS = 8


def auto_workers(device: str, gpu_workers: int | None = None) -> int:
    """Compile workers per tuning process: the CPU cores left over per GPU worker (default: one
    worker per visible GPU), at most 8; none on the CPU (the interpreter compiles nothing)."""
    if device != "cuda":
        return 0
    if gpu_workers is None:
        gpu_workers = len(visible_gpus())
    cores = os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cores // max(1, gpu_workers) - 1))


def supported(impl: str) -> bool:
    from moebench.compile_check import IMPLS

    return impl in IMPLS


def warm_config(
    impl: str, spec: MoESpec, num_tokens: int, config: dict | None, backward: bool
) -> tuple[int, str | None]:
    """In a worker: compile every launch of the layer under `config` for the current GPU.
    Returns (launches compiled, first error or None)."""
    from moebench.compile_check import record_launches

    launches = record_launches(spec, num_tokens, config, impl=impl, backward=backward)
    compiled, error = 0, None
    for launch in launches:
        try:
            launch.kernel.warmup(*launch.args, grid=launch.grid, **launch.kwargs)
            compiled += 1
        except Exception as exc:  # reported; the timed run meets (and rejects) the same failure
            error = error or f"{launch.kernel.__name__}: {type(exc).__name__}: {exc}"
    return compiled, error


_POOL: dict[int, Executor] = {}  # workers -> the pool of this process, shared by its jobs


def _shared_pool(workers: int) -> Executor:
    """One pool per process, started on first use (spawned workers take seconds to import torch
    and start CUDA, so jobs share it), stopped at exit."""
    if workers not in _POOL:
        shutdown_pool()
        _POOL[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        if len(_POOL) == 1:
            atexit.register(shutdown_pool)
    return _POOL[workers]


def shutdown_pool() -> None:
    for pool in _POOL.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _POOL.clear()


@dataclass
class Precompiler:
    """Warms one job's candidates through the process's shared pool; counts what it compiled."""

    impl: str
    spec: MoESpec
    num_tokens: int
    workers: int
    errors: list[str] = field(default_factory=list)
    compiled: int = 0

    @property
    def enabled(self) -> bool:
        return self.workers > 0 and supported(self.impl)

    def warm(self, configs: list[dict], *, backward: bool) -> None:
        """Compile `configs` (full {kernel: config} dicts) in parallel; returns when all are done."""
        if not self.enabled or not configs:
            return
        compiled, errors = warm_many(
            [(self.impl, self.spec, self.num_tokens, config, backward) for config in configs], self.workers
        )
        self.compiled += compiled
        self.errors += errors
        if any(error.startswith(POOL_BROKEN) for error in errors):
            self.workers = 0  # carry on compiling in the timing loop


POOL_BROKEN = "precompile pool:"


def warm_many(items: list[tuple[str, MoESpec, int, dict | None, bool]], workers: int) -> tuple[int, list[str]]:
    """Compile every (impl, spec, T, config, backward) item's launches at once in the shared pool
    of `workers` processes; returns (launches compiled, errors). A config of None is the defaults."""
    compiled, errors = 0, []
    try:
        pool = _shared_pool(workers)
        for future in [pool.submit(warm_config, *item) for item in items]:
            done, error = future.result()
            compiled += done
            if error:
                errors.append(error)
    except Exception as exc:  # a broken pool: the launches compile when they run instead
        errors.append(f"{POOL_BROKEN} {type(exc).__name__}: {exc}")
        shutdown_pool()
    return compiled, errors


def precompile_available() -> bool:
    """Whether warmup can compile here: a CUDA GPU and compiled (not interpreted) Triton."""
    return torch.cuda.is_available() and not interpreting()
