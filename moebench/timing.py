"""Timing, one method for bench, tune and export: warm up, then the median of many runs.

CUDA: events around each run; when the callable is graph-safe, it is captured in a CUDA graph
and graph replays are timed (launch gaps removed). A short call is captured several times back to
back in one graph (calls_per_sample, sized so one replay lasts about GRAPH_SAMPLE_MS) and each
sample is a replay's time divided by that count: a lone replay of a 20 us layer would otherwise
also time the gap between the start event and the replay's first kernel. This is how
triton.testing.do_bench_cudagraph times, which the peers' anchor figures used.
CPU: perf_counter around each run.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    runs: int
    method: str  # "cuda-graph", "cuda-events" or "cpu-wallclock"
    calls_per_sample: int = 1  # calls timed together per sample (graph replays of short calls)


# A timed cell whose samples spread more than this ((p80 - p20) / median) is flagged noisy: tables
# mark it, and a speedup involving it is printed as approximate (~), not as a measured fact.
SPREAD_BOUND = 0.10

GRAPH_SAMPLE_MS = 1.0  # a graph replay should last about this long...
MAX_CALLS_PER_SAMPLE = 32  # ...with at most this many calls captured in it


def _summarise(samples_ms: list[float], method: str, calls_per_sample: int = 1) -> Timing:
    samples = sorted(samples_ms)
    n = len(samples)
    return Timing(
        statistics.median(samples),
        samples[int(0.2 * (n - 1))],
        samples[int(0.8 * (n - 1))],
        n,
        method,
        calls_per_sample,
    )


def calls_per_sample(single_call_ms: float) -> int:
    """How many calls one graph replay should hold so that it lasts about GRAPH_SAMPLE_MS."""
    if not single_call_ms > 0:
        return 1
    return max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(GRAPH_SAMPLE_MS / single_call_ms)))


def time_cpu(fn: Callable[[], object], *, warmup: int = 2, reps: int = 10, max_seconds: float = 5.0) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < reps and (len(samples) < 3 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return _summarise(samples, "cpu-wallclock")


def time_cuda(
    fn: Callable[[], object],
    *,
    use_graph: bool = True,
    warmup: int = 5,
    reps: int = 50,
    max_seconds: float = 10.0,
) -> Timing:
    """Median of `reps` runs timed with CUDA events (graph replays when use_graph)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    method = "cuda-events"
    run = fn
    inner = 1
    if use_graph:
        inner = calls_per_sample(_event_ms(fn))  # an eager call overestimates: fewer calls, not more
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(inner):
                fn()
        run = graph.replay
        method = "cuda-graph"
        run()
        torch.cuda.synchronize()
    samples = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < reps and (len(samples) < 5 or time.perf_counter() < deadline):
        samples.append(_event_ms(run) / inner)
    return _summarise(samples, method, inner)


def _event_ms(run: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def time_fn(fn: Callable[[], object], device: torch.device | str, *, use_graph: bool = True, **kwargs) -> Timing:
    if torch.device(device).type == "cuda":
        return time_cuda(fn, use_graph=use_graph, **kwargs)
    kwargs.pop("max_seconds", None)
    return time_cpu(fn, **kwargs)
