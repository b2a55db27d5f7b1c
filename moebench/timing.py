"""Timing, one method for bench, tune and export: warm up, then the median of many samples, with the
p20..p80 spread and the sample count.

CUDA: events around each run; when the callable is graph-safe, it is captured in a CUDA graph
and graph replays are timed (launch gaps removed). A short call is captured several times back to
back in one graph (calls_per_sample, sized so one replay lasts about GRAPH_SAMPLE_MS) and each
sample is a replay's time divided by that count: a lone replay of a 20 us layer would otherwise
also time the gap between the start event and the replay's first kernel. This is how
triton.testing.do_bench_cudagraph times, which the peers' anchor figures used.
CPU: a clock around each run: wall time, or with one thread the process's CPU time (`clock="cpu"`),
which leaves out the time other jobs hold the core (a single-threaded call is busy, computing or
waiting on memory, for all of its wall time on an idle machine); jobs sharing the caches and memory
bandwidth still slow it, which the spread shows.

`before_each` runs before every sample, untimed (moebench.coldcache's flush for cold-cache cells);
a graph replay then holds one call, so every call is cold. `reps=None` samples adaptively (CPU):
until the 95% confidence interval of the median is within TARGET_CI of it, or the time budget ends.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

# A timed cell whose samples spread more than this ((p80 - p20) / median) is flagged noisy: tables
# mark it, and a speedup involving it is printed as approximate (~), not as a measured fact.
SPREAD_BOUND = 0.10

GRAPH_SAMPLE_MS = 1.0  # a graph replay should last about this long...
MAX_CALLS_PER_SAMPLE = 32  # ...with at most this many calls captured in it

TARGET_CI = 0.02  # adaptive sampling stops once the median's 95% interval is within +-2% of it
MIN_REPS, MAX_REPS = 10, 2000  # adaptive sampling: at least / at most this many samples

CLOCKS = {"wall": (time.perf_counter, "cpu-wallclock"), "cpu": (time.process_time, "cpu-process-time")}


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    runs: int
    method: str  # "cuda-graph", "cuda-events", "cpu-wallclock" or "cpu-process-time"
    calls_per_sample: int = 1  # calls timed together per sample (graph replays of short calls)
    best_ms: float = math.nan  # the fastest sample (ceilings use it: the best the machine did)

    @property
    def spread(self) -> float:
        """(p80 - p20) / median."""
        return (self.p80_ms - self.p20_ms) / self.median_ms if self.median_ms > 0 else math.nan


def quantile(sorted_samples: list[float], q: float) -> float:
    """The q-quantile, interpolated linearly between order statistics (numpy's default), so that
    p20 <= median <= p80 however few the samples."""
    pos = q * (len(sorted_samples) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (pos - lo) * (sorted_samples[hi] - sorted_samples[lo])


def _summarise(samples_ms: list[float], method: str, calls_per_sample: int = 1) -> Timing:
    samples = sorted(samples_ms)
    n = len(samples)
    return Timing(
        statistics.median(samples),
        quantile(samples, 0.2),
        quantile(samples, 0.8),
        n,
        method,
        calls_per_sample,
        samples[0],
    )


def median_ci(samples_ms: list[float]) -> float:
    """Half-width of the median's 95% confidence interval (order statistics) relative to the median;
    inf for fewer than MIN_REPS samples."""
    n = len(samples_ms)
    if n < MIN_REPS:
        return math.inf
    samples = sorted(samples_ms)
    half = 1.96 * math.sqrt(n) / 2
    lo, hi = samples[max(0, math.floor(n / 2 - half))], samples[min(n - 1, math.ceil(n / 2 + half))]
    median = statistics.median(samples)
    return (hi - lo) / 2 / median if median > 0 else math.inf


def calls_per_sample(single_call_ms: float) -> int:
    """How many calls one graph replay should hold so that it lasts about GRAPH_SAMPLE_MS."""
    if not single_call_ms > 0:
        return 1
    return max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(GRAPH_SAMPLE_MS / single_call_ms)))


def _enough(samples: list[float], reps: int | None, deadline: float) -> bool:
    n = len(samples)
    if reps is not None:  # a fixed count (at least 3 samples even past the deadline)
        return n >= reps or (n >= 3 and time.perf_counter() > deadline)
    if n < MIN_REPS:
        return False
    return n >= MAX_REPS or median_ci(samples) <= TARGET_CI or time.perf_counter() > deadline


def time_cpu(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    reps: int | None = 10,
    max_seconds: float = 5.0,
    before_each: Callable[[], object] | None = None,
    clock: str = "wall",
) -> Timing:
    """Samples of `fn` on the CPU; reps=None: adaptive (see module docstring)."""
    now, method = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while not _enough(samples, reps, deadline):
        if before_each is not None:
            before_each()
        t0 = now()
        fn()
        samples.append((now() - t0) * 1e3)
    return _summarise(samples, method)


def time_cuda(
    fn: Callable[[], object],
    *,
    use_graph: bool = True,
    warmup: int = 5,
    reps: int | None = 50,
    max_seconds: float = 10.0,
    before_each: Callable[[], object] | None = None,
    clock: str = "wall",
) -> Timing:
    """Median of `reps` runs timed with CUDA events (graph replays when use_graph)."""
    del clock  # CUDA events are the clock
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
        # cold: one call per replay, so the flush before each sample reaches every call
        inner = 1 if before_each is not None else calls_per_sample(_event_ms(fn))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(inner):
                fn()
        run = graph.replay
        method = "cuda-graph"
        run()
        torch.cuda.synchronize()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while not _enough(samples, reps if reps is not None else 50, deadline):
        if before_each is not None:
            before_each()  # queued before the start event: not timed
        samples.append(_event_ms(run) / inner)
    return _summarise(samples, method, inner)


def _event_ms(run: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def cpu_clock() -> str:
    """The CPU clock for a run: process CPU time with one torch thread, else wall time (CPU time
    would add up the threads' times)."""
    return "cpu" if torch.get_num_threads() == 1 else "wall"


def time_fn(fn: Callable[[], object], device: torch.device | str, *, use_graph: bool = True, **kwargs) -> Timing:
    if torch.device(device).type == "cuda":
        return time_cuda(fn, use_graph=use_graph, **kwargs)
    return time_cpu(fn, **kwargs)
