"""Where tuning jobs run: in this process, one worker process per GPU, or one Ray task per GPU.

Every executor hands each JobResult back to the `moebench tune` process as it finishes; that
process alone writes the config files (merging under a folder lock, atomically), so a Ray
cluster needs no shared file system and an interrupted run keeps every finished job.

  InProcess   one device, jobs in order, per-config progress.
  LocalPool   `--gpus N` > 1: N spawned workers, worker i sees only GPU i (CUDA_VISIBLE_DEVICES);
              on a CPU machine N interpreter workers (used by the tests of this path).
  RayPool     `--ray-address ADDR|local`: one Ray task per job with num_gpus=1 (num_cpus=1 and the
              Triton interpreter on a CPU machine); `local` starts a small local Ray instance.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable

import torch

from moebench.errors import MoEInputError
from moebench.tuning.device import device_info, visible_gpus
from moebench.tuning.job import JobResult, TuneJob, failed_result, run_job_safely

OnResult = Callable[[JobResult], None]


def worker_env(device: str) -> dict[str, str]:
    """Environment a worker needs: the Triton interpreter for CPU tensors."""
    return {"TRITON_INTERPRET": "1"} if device == "cpu" else {}


class InProcess:
    """Runs jobs here, one after another; on_trial gets per-config progress."""

    def __init__(self, device: str, on_trial=None) -> None:
        self.device = device
        self.on_trial = on_trial

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def device_info(self) -> dict:
        return device_info(torch.device(self.device)).as_dict()

    def run(self, jobs: list[TuneJob], on_result: OnResult, on_start: Callable[[TuneJob], None] | None = None) -> None:
        for job in jobs:
            if on_start is not None:
                on_start(job)
            on_result(run_job_safely(job, self.on_trial))


# -- one process per GPU ----------------------------------------------------------------------


def _init_worker(slots: multiprocessing.Queue, env: dict[str, str]) -> None:
    """Runs first in each spawned worker, before it touches CUDA: claim one GPU."""
    os.environ.update(env)
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


class LocalPool:
    """One spawned worker process per GPU (or `workers` CPU processes)."""

    def __init__(self, device: str, workers: int) -> None:
        self.device = device
        if device == "cuda":
            gpus = visible_gpus()
            if workers > len(gpus):
                raise MoEInputError(f"--gpus: {workers} asked for, {len(gpus)} visible ({gpus})")
            slots = gpus[:workers]
        else:
            slots = [None] * workers
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        for slot in slots:
            queue.put(slot)
        self.pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(queue, worker_env(device))
        )

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)

    def device_info(self) -> dict:
        return device_info(torch.device(self.device)).as_dict()

    def run(self, jobs: list[TuneJob], on_result: OnResult, on_start=None) -> None:
        futures = {self.pool.submit(run_job_safely, job): job for job in jobs}
        for future in cf.as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # the worker died (e.g. a crash in a kernel): report, go on
                result = failed_result(futures[future], exc)
            on_result(result)


# -- Ray --------------------------------------------------------------------------------------


def _ray_job(job: TuneJob) -> JobResult:
    os.environ.update(worker_env(job.device))
    return run_job_safely(job)


def _ray_device_info(device: str) -> dict:
    os.environ.update(worker_env(device))
    return device_info(torch.device(device)).as_dict()


class RayPool:
    """One Ray task per job, each holding one GPU (one CPU on a CPU-only cluster)."""

    def __init__(self, device: str, address: str, max_in_flight: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise MoEInputError("--ray-address: needs ray (pip install 'moebench[dist]')") from None
        self.ray = ray
        self.device = device
        self.max_in_flight = max_in_flight
        self.started = False
        if not ray.is_initialized():
            if address == "local":
                kwargs: dict = {"include_dashboard": False, "log_to_driver": False}
                if device == "cpu":
                    cpus = max(2, max_in_flight or 2)
                    kwargs.update(num_cpus=cpus, num_gpus=0, object_store_memory=100 * 1024 * 1024)
                ray.init(**kwargs)
            else:
                ray.init(address=address, log_to_driver=False)
            self.started = True
        resources = {"num_gpus": 1} if device == "cuda" else {"num_cpus": 1}
        options = {**resources, "runtime_env": {"env_vars": worker_env(device)}, "max_retries": 0}
        self.remote_job = ray.remote(_ray_job).options(**options)
        self.remote_info = ray.remote(_ray_device_info).options(**options)

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()

    def device_info(self) -> dict:
        """The device key of a cluster worker (the files are keyed by where the timing ran)."""
        return self.ray.get(self.remote_info.remote(self.device))

    def run(self, jobs: list[TuneJob], on_result: OnResult, on_start=None) -> None:
        pending: dict = {}
        queue = list(jobs)
        while queue or pending:
            while queue and (self.max_in_flight is None or len(pending) < self.max_in_flight):
                job = queue.pop(0)
                pending[self.remote_job.remote(job)] = job
            done, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    result = self.ray.get(ref)
                except Exception as exc:  # the task or its worker died: report, go on
                    result = failed_result(job, exc)
                on_result(result)


def make_executor(device: str, *, gpus: int | None, ray_address: str | None, on_trial=None):
    """The executor for these options (see module docstring)."""
    if gpus is not None and gpus < 1:
        raise MoEInputError(f"--gpus: expected a positive count, got {gpus}")
    if ray_address:
        return RayPool(device, ray_address, max_in_flight=gpus)
    if gpus is None:
        gpus = len(visible_gpus()) if device == "cuda" else 1
    if gpus <= 1:
        return InProcess(device, on_trial)
    return LocalPool(device, gpus)
