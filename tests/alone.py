"""Tests that time the machine (the A/B gate end to end) run alone under pytest-xdist.

The README's test command runs the suite in several worker processes (`pytest -n auto`). A test that
times code, here the real A/B gate in tests/test_regression.py, would then share the cores with
another worker's tests, and its verdicts would depend on what that worker happened to run. So every
test holds a shared lock on one file for its run, and a fixture that times takes the exclusive lock
(fcntl.flock, released when its scope ends): the other workers wait between tests while it runs.
Without xdist (one process) nothing is locked. Each worker also gives torch its share of the cores,
so that the workers' intra-op threads do not oversubscribe them.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # set by pytest-xdist in its workers
if WORKER is not None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
_held_alone = False  # this process holds the exclusive lock: its own tests must not ask for a shared one


def _lock_file(factory: pytest.TempPathFactory) -> Path:
    """One file every worker of this run sees: the workers' temporary roots share a parent."""
    return factory.getbasetemp().parent / "moebench-alone.lock"


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def alone(factory: pytest.TempPathFactory) -> Iterator[None]:
    """No other worker's test runs inside this block."""
    global _held_alone
    if WORKER is None:
        yield
        return
    with _flock(_lock_file(factory), fcntl.LOCK_EX):
        _held_alone = True
        try:
            yield
        finally:
            _held_alone = False


@pytest.fixture(autouse=True)
def _shared_with_other_tests(tmp_path_factory) -> Iterator[None]:
    if WORKER is None or _held_alone:
        yield
        return
    with _flock(_lock_file(tmp_path_factory), fcntl.LOCK_SH):
        yield
