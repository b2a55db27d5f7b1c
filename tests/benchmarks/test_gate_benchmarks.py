"""The benchmarks the CI performance gate times (method, statistic, threshold: moebench/regression.py).

Both sides of the A/B gate run THIS file, the current tree's, each against its own installed
library, so the harness is identical and only the library differs. That is why it reaches the
implementations only through moebench's public API (get, get_preset, random_weights,
random_inputs, ImplInfo.__call__), which baseline revisions have too: a case whose implementation
or preset a side's library lacks is skipped there (the gate then calls it new, or gone).

The gate runs it with this folder's conftest only (not the suite's tests/conftest.py, which may
import moebench internals a baseline lacks) and with TRITON_INTERPRET=1 set by the gate.

A case is "impl/preset/T<tokens>", fp32 at fixed seeds: the torch paths on the small presets, and
the Triton paths (interpreter on CPU tensors) on the tiny preset, which times their launch path
(the kernels' machine code is the static gate's job). Everything runs single-threaded and is timed
in process CPU time, so time other jobs take from a shared machine is not counted.

The gate times each case in several passes over the whole list (--gate-passes), so its rounds are
spread over the process's life: on a loaded machine the CPU time of a round depends on what shares
the core at that moment, and the best round of a case then comes from the quietest stretches rather
than from one stretch of a second or two. The rounds of all passes are that case's rounds (same key).
The gate runs it as (rounds and time per pass set by the gate):
    python -m pytest tests/benchmarks --benchmark-enable --benchmark-only --benchmark-json=FILE
    --gate-passes=3 [--gate-cases=grouped_mm/small-8x2/T16,...]
In a plain `pytest` run (benchmarks disabled, one pass) each case runs once: a smoke test.
"""

from __future__ import annotations

import functools
import time

import pytest
import torch

import moebench

pytestmark = pytest.mark.benchmark_gate

TORCH_CASES = tuple(
    f"{impl}/{preset}/T{tokens}"
    for impl in ("naive_loop", "padded_batch", "grouped_mm")
    for preset in ("small-8x2", "small-32x4")
    for tokens in (16, 128)
)
TRITON_CASES = ("triton_grouped/tiny/T16", "block_sparse/tiny/T16")
CASES = TORCH_CASES + TRITON_CASES


def pytest_generate_tests(metafunc):
    """Every case PASSES times, the whole list over again each time (ids CASE#1, CASE#2 ...)."""
    if "case" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("gate_cases", None)  # tests/benchmarks/conftest.py
        passes = metafunc.config.getoption("gate_passes", 1)
        cases = chosen.split(",") if chosen else CASES
        runs = [(case, n) for n in range(1, passes + 1) for case in cases]
        # the Triton cases run in the interpreter on CPU tensors: marked so (tests/conftest.py's kernel guard)
        params = [pytest.param(case, marks=[pytest.mark.interpreter] * (case in TRITON_CASES)) for case, _ in runs]
        metafunc.parametrize("case", params, ids=[f"{case}#{n}" for case, n in runs])


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One thread: times then do not depend on the core count or on other jobs' oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def problem(preset: str, tokens: int) -> tuple[object, torch.Tensor]:
    """(weights, x) of a preset at T tokens, drawn once per process: every implementation and pass times the
    same tensors, and drawing them (tens of MB of random numbers) is not paid again for each case."""
    spec = moebench.get_preset(preset, torch.float32)
    return moebench.random_weights(spec, seed=1234), moebench.random_inputs(spec, tokens, seed=4321 + tokens)


def parse_case(case: str) -> tuple[str, str, int]:
    impl, preset, tokens = case.split("/")
    return impl, preset, int(tokens.removeprefix("T"))


@pytest.mark.benchmark(group="moe", timer=time.process_time, warmup=True, warmup_iterations=2)
def test_moe_layer(benchmark, case):
    impl, preset, tokens = parse_case(case)
    try:
        info = moebench.get(impl)
        moebench.get_preset(preset, torch.float32)
    except moebench.UnknownImplementationError as exc:
        pytest.skip(f"not in this library: {exc}")
    ok, reason = info.available("cpu")
    if not ok:
        pytest.skip(f"{impl}: {reason}")
    weights, x = problem(preset, tokens)
    out = torch.empty_like(x)
    # one checked call, untimed (parity is the test suite's job; this catches a call that does nothing)
    assert torch.isfinite(info(x, weights, out=out)).all()
    benchmark.extra_info["key"] = case
    benchmark(info, x, weights, out=out, check=False)
