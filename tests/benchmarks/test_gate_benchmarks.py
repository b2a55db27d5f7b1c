"""The CPU regression-gate suite (see moebench/regression.py for the method and threshold).

Run for the gate (pyproject's addopts disable benchmarks; enable them explicitly):
    python -m pytest tests/benchmarks -m benchmark_gate -p no:randomly --benchmark-enable \
        --benchmark-only --benchmark-json=out/bench-gate.json
    python -m moebench.regression check out/bench-gate.json --baseline tests/benchmarks/baseline.json
In a plain `pytest` run (benchmarks disabled) each test runs its function once: a smoke test.

Order matters: calibration first, the layers, calibration last (pytest keeps file order).
Everything runs single-threaded at fixed seeds, so the work is identical on every machine, and is
timed in process CPU time (time.process_time), so other jobs on the machine barely matter.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from moebench import registry
from moebench.parity import compare
from moebench.presets import get_preset
from moebench.reference import reference_moe
from moebench.weights import random_inputs, random_weights

pytestmark = pytest.mark.benchmark_gate

PRESETS = ("small-8x2", "small-32x4")
TOKENS = (16, 128)
IMPLS = ("naive_loop", "padded_batch", "grouped_mm")
# CPU time of the process, not wall time: a busy machine (other jobs preempting this one) then
# barely moves the numbers; single-threaded, so CPU time is the layer's own work.
BENCH_SETTINGS = dict(
    group="moe", timer=time.process_time, min_rounds=5, max_time=0.4, warmup=True, warmup_iterations=2
)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One thread: the ratios then do not depend on core count or on other load's oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problems():
    """Fixed-seed fp32 weights per preset and inputs per T (identical on every run and machine)."""
    cache = {}
    for preset in PRESETS:
        spec = get_preset(preset, torch.float32)
        weights = random_weights(spec, seed=1234)
        for num_tokens in TOKENS:
            cache[(preset, num_tokens)] = (weights, random_inputs(spec, num_tokens, seed=4321 + num_tokens))
    return cache


def _calibration_workload():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=gen)
    b = torch.randn(256, 256, generator=gen)
    src = torch.ones(4 << 20)  # 16 MiB fp32
    dst = torch.empty_like(src)

    def run():
        c = a @ b
        dst.copy_(src)
        return c

    return run


def interleaved(benchmark, target, budget_s: float = 0.5) -> None:
    """benchmark.pedantic with one calibration call right before every round.

    The machine's speed drifts by up to 2x over seconds on shared VMs; a calibration taken in the
    same instant as each round drifts with it. pytest-benchmark times the target; the setup hook
    times the calibration with the same clock and leaves its min/median in extra_info, which the
    gate divides by (moebench.regression.normalise).
    """
    calibration, samples = _calibration_workload(), []

    def setup():
        started = time.process_time()
        calibration()
        samples.append(time.process_time() - started)

    started = time.process_time()
    target()
    estimate = time.process_time() - started
    rounds = max(10, min(100, int(budget_s / max(estimate, 1e-4))))
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=2)
    if samples:  # empty when benchmarks are disabled (the target ran once, as a smoke test)
        benchmark.extra_info.update(calibration_min_s=min(samples), calibration_median_s=statistics.median(samples))


def _calibrate(benchmark, when: str) -> None:
    benchmark.extra_info.update(role="calibration", key=f"calibration/{when}")
    result = benchmark(_calibration_workload())
    assert torch.isfinite(result).all()


@pytest.mark.benchmark(**BENCH_SETTINGS)
def test_calibration_start(benchmark):
    _calibrate(benchmark, "start")


@pytest.mark.benchmark(**BENCH_SETTINGS)
@pytest.mark.parametrize("num_tokens", TOKENS, ids=lambda t: f"T{t}")
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("impl", IMPLS)
def test_moe_layer(benchmark, problems, impl, preset, num_tokens):
    info = registry.get(impl)
    ok, reason = info.available("cpu")
    if not ok:
        pytest.skip(f"{impl}: {reason}")
    weights, x = problems[(preset, num_tokens)]
    out = torch.empty_like(x)
    result = info(x, weights, out=out)  # checked once, untimed
    parity = compare(result, reference_moe(x, weights), torch.float32)
    assert parity.ok, parity.message
    benchmark.extra_info.update(key=f"{impl}/{preset}/T{num_tokens}", impl=impl, preset=preset, T=num_tokens)
    interleaved(benchmark, lambda: info(x, weights, out=out, check=False))


@pytest.mark.benchmark(**BENCH_SETTINGS)
def test_calibration_end(benchmark):
    _calibrate(benchmark, "end")
