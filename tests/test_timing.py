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
