"""Run a function on P local processes joined in one torch.distributed group, without torchrun.

Used by the tests (gloo on the CPU) and by single-node measurements. The processes start from a
fork server that has imported torch and moebench once (never a fork of the caller, whose thread
pools may be running; plain spawn where there is no fork server), rendezvous through a file in a
temporary folder (no port to pick), and are killed when the time limit passes, so a stuck
collective fails the caller instead of hanging it.
"""

from __future__ import annotations

import datetime
import os
import pickle
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# imported once by the fork server, before it forks any rank (the registry with its kernels included)
_PRELOAD = ["torch", "torch.distributed", "moebench.ep", "moebench.impls"]


def preload(*modules: str) -> None:
    """Have the fork server import `modules` too (each rank then starts with them, instead of importing
    them itself). Takes effect only if called before the first `run_ranks` of this process; a module that
    cannot be imported is skipped."""
    _PRELOAD.extend(m for m in modules if m not in _PRELOAD)


def _worker(rank: int, fn: Callable, world: int, args: tuple, backend: str, folder: str, timeout_s: float) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend,
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    try:
        result = fn(rank, world, *args)
        dist.barrier()
    except BaseException:
        (Path(folder) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()
    with open(Path(folder) / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(result, f)


def run_ranks(
    fn: Callable[..., Any], world_size: int, args: tuple = (), *, backend: str = "gloo", timeout_s: float = 120.0
) -> list[Any]:
    """fn(rank, world_size, *args) on `world_size` processes; returns their results in rank order.

    fn must be importable by name (a module-level function) and return a picklable value (tensors are
    fine). An exception in any rank raises RuntimeError here with every failed rank's traceback;
    passing `timeout_s` kills all ranks and raises TimeoutError.
    """
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    if method == "forkserver":  # takes effect when the fork server starts (once per process)
        mp.get_context(method).set_forkserver_preload(_PRELOAD)
    with tempfile.TemporaryDirectory(prefix="moebench-ep-") as folder:
        context = mp.start_processes(
            _worker,
            args=(fn, world_size, args, backend, folder, timeout_s),
            nprocs=world_size,
            join=False,
            start_method=method,
        )
        deadline = time.monotonic() + timeout_s
        try:
            while not context.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    for process in context.processes:
                        if process.is_alive():
                            process.kill()
                    for process in context.processes:
                        process.join()
                    raise TimeoutError(f"run_ranks: {fn.__name__} on {world_size} ranks still ran after {timeout_s} s")
        except (
            mp.ProcessRaisedException,
            mp.ProcessExitedException,
        ) as exc:  # every failed rank's traceback, not only the first to exit
            errors = sorted(Path(folder).glob("rank*.err"))
            report = "\n".join(f"--- {e.stem}:\n{e.read_text()}" for e in errors) or str(exc)
            raise RuntimeError(f"run_ranks: {fn.__name__} failed on {len(errors) or 'some'} rank(s)\n{report}") from exc
        results = []
        for rank in range(world_size):
            with open(Path(folder) / f"rank{rank}.pkl", "rb") as f:
                results.append(pickle.load(f))
        return results
