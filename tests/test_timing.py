"""moebench.timing: the shared timing method (no timed assertions: what is checked is how it
times, never how fast something is)."""

from __future__ import annotations

import pytest
import torch

from moebench import timing


def test_calls_per_sample_fills_a_graph_replay_to_about_a_millisecond():
    assert timing.calls_per_sample(0.02) == timing.MAX_CALLS_PER_SAMPLE  # 20 us: capped
    assert timing.calls_per_sample(0.1) == 10
    assert timing.calls_per_sample(0.4) == 3
    assert timing.calls_per_sample(1.0) == 1
    assert timing.calls_per_sample(25.0) == 1
    assert timing.calls_per_sample(0.0) == 1 and timing.calls_per_sample(float("nan")) == 1


def test_cpu_timing_counts_one_call_per_sample():
    calls = []
    result = timing.time_fn(lambda: calls.append(1), "cpu", warmup=2, reps=7)
    assert result.method == "cpu-wallclock" and result.calls_per_sample == 1
    assert result.runs == 7 and len(calls) == 2 + 7
    assert result.p20_ms <= result.median_ms <= result.p80_ms


@pytest.mark.gpu
def test_short_calls_are_captured_several_times_per_graph_replay():
    x = torch.randn(256, device="cuda")
    out = torch.empty_like(x)
    calls = []

    def step():
        calls.append(1)
        torch.mul(x, 2.0, out=out)

    graph = timing.time_fn(step, "cuda", use_graph=True, warmup=2, reps=5)
    assert graph.method == "cuda-graph" and graph.calls_per_sample > 1
    # warm-up, the sizing call, then the captured calls: replays do not call back into Python
    assert len(calls) == 2 + 1 + graph.calls_per_sample
    eager = timing.time_fn(step, "cuda", use_graph=False, warmup=2, reps=5)
    assert eager.method == "cuda-events" and eager.calls_per_sample == 1
    assert torch.equal(out, x * 2)


def test_adaptive_cpu_sampling_stops_between_its_bounds_and_flushes_before_each_sample():
    calls, flushes = [], []
    flush = lambda: flushes.append(1)  # noqa: E731
    result = timing.time_fn(
        lambda: calls.append(len(flushes)), "cpu", warmup=1, reps=None, max_seconds=0.5, before_each=flush
    )
    assert timing.MIN_REPS <= result.runs <= timing.MAX_REPS
    assert len(flushes) == result.runs and calls[1:] == list(range(1, result.runs + 1))  # a flush before each sample
    assert result.best_ms <= result.p20_ms <= result.median_ms <= result.p80_ms


def test_cpu_clock_is_process_time_with_one_thread():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert timing.cpu_clock() == "cpu"
        assert timing.time_fn(lambda: None, "cpu", reps=3, clock="cpu").method == "cpu-process-time"
    finally:
        torch.set_num_threads(threads)


def test_median_confidence_interval_from_order_statistics():
    assert timing.median_ci([1.0] * 5) == float("inf")  # too few samples to say
    assert timing.median_ci([1.0] * 50) == 0.0
    spread = [1.0 + 0.01 * i for i in range(100)]  # 1.00 .. 1.99, median ~1.5
    assert 0.05 < timing.median_ci(spread) < 0.1
    assert timing.Timing(2.0, 1.8, 2.2, 10, "x").spread == pytest.approx(0.2)


@pytest.mark.gpu
def test_cold_cuda_samples_flush_before_each_and_hold_one_call():
    x = torch.randn(1 << 16, device="cuda")
    out = torch.empty_like(x)
    flushes = []
    cold = timing.time_fn(lambda: torch.mul(x, 2.0, out=out), "cuda", use_graph=True, warmup=2, reps=5,
                          before_each=lambda: flushes.append(1))  # fmt: skip
    assert cold.method == "cuda-graph" and cold.calls_per_sample == 1 and len(flushes) == cold.runs == 5


def test_quantiles_interpolate_so_the_median_lies_between_p20_and_p80():
    assert timing.quantile([1.0, 2.0], 0.2) == pytest.approx(1.2) and timing.quantile([1.0, 2.0], 0.8) == 1.8
    assert timing.quantile([5.0], 0.2) == 5.0 and timing.quantile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.2) == 2.0
    summary = timing._summarise([3.0, 1.0], "x")
    assert summary.p20_ms <= summary.median_ms == 2.0 <= summary.p80_ms
