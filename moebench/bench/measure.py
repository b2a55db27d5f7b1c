"""Measuring one implementation on one (spec, T) cell the same way for every tool: the cell's inputs
and reference, parity on a NaN-poisoned `out` before and after timing, and the timing itself
(moebench.timing.time_fn: warm-up, median; CUDA graphs where the implementation is graph-safe).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from moebench.bench.rows import make_row
from moebench.ceilings import Ceilings
from moebench.coldcache import cache_state, count_active_experts
from moebench.parity import Expected, compare, expected_output, poison_allocator
from moebench.registry import ImplInfo
from moebench.spec import MoESpec
from moebench.stats import SHARED_STAT, collect_stats
from moebench.timing import cpu_clock, time_fn
from moebench.weights import MoEWeights, random_inputs


@dataclass(frozen=True)
class BenchOptions:
    """How to time: CUDA graphs on/off, warm-up, repetitions (None: moebench.timing's defaults; on
    the CPU adaptive sampling), and the cache state (auto: cold for weight-bound cells)."""

    use_graph: bool = True
    eager: bool = True  # False: a graph-safe implementation on CUDA gets its CUDA-graph row only
    warmup: int | None = None
    reps: int | None = None
    seed: int | None = None  # fixes weight seed = seed, input seed = seed + 1 + T (default: fresh)
    cache: str = "auto"  # auto | cold | warm (moebench.coldcache)

    cpu_budget_s: float = 3.0  # CPU, reps not given: sample until the median is tight or this many seconds

    def timing_kwargs(self, device: torch.device, first_call_ms: float) -> dict:
        """time_fn arguments; on the CPU without explicit reps, adaptive sampling within cpu_budget_s."""
        kwargs: dict = {}
        if device.type == "cpu":
            kwargs["clock"] = cpu_clock()
            if self.reps is None:
                kwargs.update(reps=None, max_seconds=self.cpu_budget_s, warmup=1 if first_call_ms > 20 else 2)
        if self.warmup is not None:
            kwargs["warmup"] = self.warmup
        if self.reps is not None:
            kwargs["reps"] = self.reps
        return kwargs


@dataclass
class Cell:
    """One (spec, T) point: the inputs every implementation sees and the reference output."""

    spec: MoESpec
    num_tokens: int
    weights: MoEWeights
    x: torch.Tensor
    ref: Expected  # the fp64 reference, near-tied routing accepted either way
    n_active: int
    weight_seed: int
    input_seed: int


def make_cell(spec: MoESpec, num_tokens: int, weights: MoEWeights, weight_seed: int, input_seed: int) -> Cell:
    x = random_inputs(spec, num_tokens, device=weights.device, seed=input_seed)
    return Cell(
        spec,
        num_tokens,
        weights,
        x,
        expected_output(x, weights),
        count_active_experts(x, weights),
        weight_seed,
        input_seed,
    )


def measure_callable(
    fn: Callable[[], object],
    spec: MoESpec,
    num_tokens: int,
    device: str | torch.device,
    label: str,
    kind: str = "deployed",
    *,
    parity_error: float = float("nan"),
    parity_ok: bool | None = None,
    n_active: int | None = None,
    ceilings: Ceilings | None = None,
    baseline: str = "",
    baseline_ms: float | None = None,
    use_graph: bool = False,
    weight_seed: int | str = "",
    input_seed: int | str = "",
    note: str = "",
    timing_kwargs: dict | None = None,
    cache: str = "auto",
) -> dict:
    """Time `fn` with moebench.timing.time_fn and return a bench row for it.

    For tools outside the registry (e.g. an ONNX Runtime session, label 'ort-cpu:portable'): the
    caller checks parity itself and passes the rel. L2 error and verdict, and the number of
    distinct experts its input hits (count_active_experts) for the weight-bandwidth column.
    On CUDA `fn` must do its work on the current stream (or synchronise) for events to time it.
    """
    n_active = n_active if n_active is not None else spec.num_experts
    state, cold = cache_state(cache, spec, num_tokens, n_active, ceilings, torch.device(device))
    timing = time_fn(fn, device, use_graph=use_graph, **(timing_kwargs or {}), **cold)
    tol = float("nan")
    if parity_ok is not None:
        from moebench.tolerances import tolerance

        tol = tolerance(spec.dtype)
    return make_row(
        impl=label,
        kind=kind,
        spec=spec,
        num_tokens=num_tokens,
        timing=timing,
        n_active=n_active,
        ceilings=ceilings,
        cache=state,
        parity_rel_l2=parity_error,
        parity_tol=tol,
        parity_ok=parity_ok,
        note=note,
        baseline=baseline,
        baseline_ms=baseline_ms,
        weight_seed=weight_seed,
        input_seed=input_seed,
        device=device,
    )


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Check:
    rel_l2: float
    tol: float
    ok: bool
    message: str


def _check(result: torch.Tensor, out: torch.Tensor, ref: Expected, dtype) -> _Check:
    if result.data_ptr() != out.data_ptr() and out.numel():
        return _Check(math.nan, math.nan, False, "implementation ignored out= (returned a different tensor)")
    if out.is_cuda:
        torch.cuda.synchronize(out.device)
    res = compare(result, ref, dtype)
    return _Check(res.rel_l2, res.tolerance, res.ok, "" if res.ok else f"parity: {res.message}")


def bench_impl(
    info: ImplInfo,
    cell: Cell,
    device: torch.device,
    ceilings: Ceilings | None,
    options: BenchOptions,
    env: dict,
    baseline: str = "",
) -> list[dict]:
    """Rows for one implementation on one cell: parity first, then eager and (if graph-safe) graph timing."""
    spec, x, weights = cell.spec, cell.x, cell.weights
    common = dict(
        impl=info.name,
        kind=info.kind,
        spec=spec,
        num_tokens=cell.num_tokens,
        n_active=cell.n_active,
        ceilings=ceilings,
        baseline=baseline,
        weight_seed=cell.weight_seed,
        input_seed=cell.input_seed,
        env=env,
        drops_tokens=info.drops_tokens,
    )
    out = torch.full_like(x, math.nan)
    notes: list[str] = []
    try:
        poison_allocator(device, 4 * x.numel() * spec.top_k * x.element_size() + (1 << 20))
        with collect_stats() as stats:
            started = time.perf_counter()
            result = info(x, weights, out=out)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            first_call_ms = (time.perf_counter() - started) * 1e3
        ref = cell.ref
        if info.drops_tokens and "dropped_pairs" in stats:
            ref = expected_output(x, weights, keep=~stats["dropped_pairs"])
            notes.append(f"drops tokens: {int(stats['num_dropped'])} of {x.shape[0] * spec.top_k} pairs")
        if SHARED_STAT in stats:
            notes.append(f"shared experts: {stats[SHARED_STAT]}")
        first = _check(result, out, ref, spec.dtype)
    except Exception as exc:  # report, never crash the run
        return [make_row(timing=None, note=_short(exc, 500), **common)]

    graph = device.type == "cuda" and options.use_graph and info.graph_safe
    methods = ([False] if options.eager or not graph else []) + ([True] if graph else [])
    state, cold = cache_state(options.cache, spec, cell.num_tokens, cell.n_active, ceilings, device)
    common["cache"] = state
    rows = []
    for use_graph in methods:
        out.fill_(math.nan)
        call = lambda: info(x, weights, out=out, check=False)  # noqa: E731
        try:
            kwargs = options.timing_kwargs(device, first_call_ms)
            timing = time_fn(call, device, use_graph=use_graph, **kwargs, **cold)
        except Exception as exc:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if use_graph and rows:
                # e.g. a host sync inside: the implementation is fine, it just has no graph time
                rows[-1]["note"] = "; ".join(n for n in (rows[-1]["note"], f"no CUDA graph: {_short(exc)}") if n)
            else:
                rows.append(make_row(timing=None, note=f"timing failed: {_short(exc)}", **common))
            continue
        # the untimed poisoned run decides first; else the last timed run (left in `out`) is the verdict
        check = first if not first.ok else _check(out, out, ref, spec.dtype)
        note = "; ".join(m for m in (check.message, *notes) if m)
        rows.append(
            make_row(
                timing=timing, parity_rel_l2=check.rel_l2, parity_tol=first.tol, parity_ok=check.ok, note=note, **common
            )
        )
    return rows
