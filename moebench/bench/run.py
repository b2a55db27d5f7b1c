"""The benchmark runner behind `moebench bench`: time implementations, check them, write rows.

For every (spec, T, implementation) cell:
  * inputs: weights from `random_weights` (one fresh seed per spec) and x from `random_inputs`
    (one fresh seed per (spec, T)); every implementation of a cell sees the same tensors, and
    both seeds are recorded in the row so the cell can be rerun exactly;
  * parity: one run into a NaN-poisoned `out`, compared with the fp64 reference on those inputs;
    after each timing method `out` (re-poisoned first) holds the last timed run, which is checked
    again, so a row's parity is that of the very calls it timed (CUDA-graph replays included);
  * timing: `moebench.timing.time_fn` (warm-up, then the median). On CUDA every implementation is
    timed eagerly (CUDA events) and, when it is graph_safe, also as CUDA-graph replays: two rows;
  * metrics: TFLOP/s from spec.flops(T); weight GB/s from the bytes of the distinct experts the
    routing of this input hits (spec.expert_weight_bytes(n_active)); % of the dense-GEMM and copy
    ceilings measured in the same run (moebench.ceilings); speedup = baseline's best time / time.

Rows are long format (one measurement per row, see ROW_COLUMNS) plus moebench.results.environment().
`measure_callable` and `make_row` let other tools (the export helper timing ONNX Runtime sessions)
add rows measured the same way.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from moebench import registry
from moebench.ceilings import Ceilings
from moebench.parity import compare, poison_allocator
from moebench.presets import spec_label
from moebench.reference import reference_moe
from moebench.registry import ImplInfo
from moebench.results import environment
from moebench.routing import route
from moebench.spec import MoESpec, dtype_name
from moebench.stats import collect_stats
from moebench.timing import Timing, time_fn
from moebench.weights import MoEWeights, random_inputs, random_weights

# columns of a bench row, in CSV order (environment fields follow)
ROW_COLUMNS = (
    "impl",
    "kind",
    "baseline",
    "preset",
    "E",
    "k",
    "H",
    "I",
    "activation",
    "router",
    "dtype",
    "T",
    "method",
    "threads",
    "median_ms",
    "p20_ms",
    "p80_ms",
    "runs",
    "calls_per_sample",
    "speedup",
    "tflops",
    "weight_gbps",
    "active_experts",
    "flops",
    "weight_bytes",
    "pct_gemm_ceiling",
    "pct_copy_ceiling",
    "gemm_ceiling_tflops",
    "copy_ceiling_gbps",
    "parity_rel_l2",
    "parity_tol",
    "parity_ok",
    "status",
    "drops_tokens",
    "note",
    "weight_seed",
    "input_seed",
)

# status values: ok (timed, parity passed), parity-fail (timed, parity failed), error (crashed)
STATUS_OK, STATUS_PARITY_FAIL, STATUS_ERROR = "ok", "parity-fail", "error"

TRITON_ON_CPU_REASON = (
    "Triton kernels run in the interpreter on the CPU: timing it is meaningless (name it with --impl to time anyway)"
)
DEPLOYED_REASON = (
    "exported-model runtimes are compared by `moebench export --bench` (name it with --impl to include it here)"
)


@dataclass(frozen=True)
class BenchOptions:
    """How to time: CUDA graphs on/off, warm-up and repetitions (None: moebench.timing's defaults)."""

    use_graph: bool = True
    warmup: int | None = None
    reps: int | None = None
    seed: int | None = None  # fixes weight seed = seed, input seed = seed + 1 + T (default: fresh)

    cpu_budget_s: float = 0.2  # CPU, reps not given: aim for about this long per measurement

    def timing_kwargs(self, device: torch.device, first_call_ms: float) -> dict:
        """time_fn arguments; on the CPU without explicit reps, 3-10 reps sized by the first call."""
        kwargs = {}
        if device.type == "cpu" and self.reps is None:
            kwargs["reps"] = max(3, min(10, int(self.cpu_budget_s * 1e3 / max(first_call_ms, 1e-3))))
            kwargs["warmup"] = 1 if first_call_ms > 20 else 2
        if self.warmup is not None:
            kwargs["warmup"] = self.warmup
        if self.reps is not None:
            kwargs["reps"] = self.reps
        return kwargs


# ---------------------------------------------------------------------------------------------
# reference and per-cell inputs
# ---------------------------------------------------------------------------------------------
def count_active_experts(x: torch.Tensor, weights: MoEWeights) -> int:
    """Distinct experts the routing of `x` selects (the experts whose weights must be read)."""
    if x.shape[0] == 0:
        return 0
    _, topk_ids = route(x, weights.router, weights.spec)
    return int(torch.unique(topk_ids).numel())


@dataclass
class Cell:
    """One (spec, T) point: the inputs every implementation sees and the reference output."""

    spec: MoESpec
    num_tokens: int
    weights: MoEWeights
    x: torch.Tensor
    ref: torch.Tensor
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
        reference_moe(x, weights),
        count_active_experts(x, weights),
        weight_seed,
        input_seed,
    )


# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------
def _ratio(num: float, den: float) -> float:
    return num / den if den and den > 0 and not math.isnan(den) else float("nan")


def row_metrics(spec: MoESpec, num_tokens: int, median_ms: float, n_active: int, ceilings: Ceilings | None) -> dict:
    """Throughput columns for one time: TFLOP/s, weight GB/s and their % of the ceilings."""
    flops = spec.flops(num_tokens)
    weight_bytes = spec.expert_weight_bytes(n_active)
    seconds = median_ms * 1e-3
    tflops = _ratio(flops, seconds) / 1e12
    gbps = _ratio(weight_bytes, seconds) / 1e9
    gemm = ceilings.gemm(spec.dtype) if ceilings else float("nan")
    copy = ceilings.copy_gbps if ceilings else float("nan")
    return {
        "tflops": tflops,
        "weight_gbps": gbps,
        "active_experts": n_active,
        "flops": flops,
        "weight_bytes": weight_bytes,
        "pct_gemm_ceiling": 100 * _ratio(tflops, gemm),
        "pct_copy_ceiling": 100 * _ratio(gbps, copy),
        "gemm_ceiling_tflops": gemm,
        "copy_ceiling_gbps": copy,
    }


def make_row(
    *,
    impl: str,
    kind: str,
    spec: MoESpec,
    num_tokens: int,
    timing: Timing | None,
    n_active: int,
    ceilings: Ceilings | None,
    parity_rel_l2: float = float("nan"),
    parity_tol: float = float("nan"),
    parity_ok: bool | None = None,
    status: str | None = None,
    note: str = "",
    drops_tokens: bool = False,
    baseline: str = "",
    baseline_ms: float | None = None,
    weight_seed: int | str = "",
    input_seed: int | str = "",
    env: dict | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """One long-format row. status defaults to ok / parity-fail (from parity_ok) / error (no timing)."""
    e, k, h, i = spec.shape
    row: dict = {
        "impl": impl,
        "kind": kind,
        "baseline": baseline,
        "preset": spec_label(spec),
        "E": e,
        "k": k,
        "H": h,
        "I": i,
        "activation": spec.activation,
        "router": spec.router.scoring + ("+renorm" if spec.router.renormalize else ""),
        "dtype": dtype_name(spec.dtype),
        "T": num_tokens,
    }
    if timing is not None:
        row.update(
            method=timing.method,
            threads=torch.get_num_threads() if torch.device(device).type == "cpu" else "",
            median_ms=timing.median_ms,
            p20_ms=timing.p20_ms,
            p80_ms=timing.p80_ms,
            runs=timing.runs,
            calls_per_sample=timing.calls_per_sample,
            speedup=_ratio(baseline_ms, timing.median_ms) if baseline_ms else float("nan"),
        )
        row.update(row_metrics(spec, num_tokens, timing.median_ms, n_active, ceilings))
    if status is None:
        status = STATUS_ERROR if timing is None else (STATUS_PARITY_FAIL if parity_ok is False else STATUS_OK)
    row.update(
        parity_rel_l2=parity_rel_l2,
        parity_tol=parity_tol,
        parity_ok="" if parity_ok is None else bool(parity_ok),
        status=status,
        drops_tokens=bool(drops_tokens),
        note=note,
        weight_seed=weight_seed,
        input_seed=input_seed,
    )
    ordered = {c: row.get(c, "") for c in ROW_COLUMNS}
    ordered.update(env if env is not None else environment(device))
    return ordered


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
) -> dict:
    """Time `fn` with moebench.timing.time_fn and return a bench row for it.

    For tools outside the registry (e.g. an ONNX Runtime session, label 'ort-cpu:portable'): the
    caller checks parity itself and passes the rel. L2 error and verdict, and the number of
    distinct experts its input hits (count_active_experts) for the weight-bandwidth column.
    On CUDA `fn` must do its work on the current stream (or synchronise) for events to time it.
    """
    timing = time_fn(fn, device, use_graph=use_graph, **(timing_kwargs or {}))
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
        n_active=n_active if n_active is not None else spec.num_experts,
        ceilings=ceilings,
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


# ---------------------------------------------------------------------------------------------
# one implementation on one cell
# ---------------------------------------------------------------------------------------------
def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Check:
    rel_l2: float
    tol: float
    ok: bool
    message: str


def _check(result: torch.Tensor, out: torch.Tensor, ref: torch.Tensor, dtype) -> _Check:
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
            ref = reference_moe(x, weights, keep=~stats["dropped_pairs"])
            notes.append(f"drops tokens: {int(stats['num_dropped'])} of {x.shape[0] * spec.top_k} pairs")
        first = _check(result, out, ref, spec.dtype)
    except Exception as exc:  # report, never crash the run
        return [make_row(timing=None, note=_short(exc, 500), **common)]

    methods = [False]
    if device.type == "cuda" and options.use_graph and info.graph_safe:
        methods.append(True)
    rows = []
    for use_graph in methods:
        out.fill_(math.nan)
        call = lambda: info(x, weights, out=out, check=False)  # noqa: E731
        try:
            timing = time_fn(call, device, use_graph=use_graph, **options.timing_kwargs(device, first_call_ms))
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


def fill_speedups(rows: list[dict], baseline: str) -> None:
    """Set speedup = (baseline's best time on the same cell) / time, for every timed row."""
    best: dict[tuple, float] = {}
    for row in rows:
        if row["impl"] == baseline and isinstance(row.get("median_ms"), float):
            key = _cell_key(row)
            best[key] = min(best.get(key, math.inf), row["median_ms"])
    for row in rows:
        if isinstance(row.get("median_ms"), float):
            base = best.get(_cell_key(row))
            row["speedup"] = _ratio(base, row["median_ms"]) if base is not None else float("nan")
            row["baseline"] = baseline


def _cell_key(row: dict) -> tuple:
    return (row["preset"], row["E"], row["k"], row["H"], row["I"], row["activation"], row["dtype"], row["T"])


# ---------------------------------------------------------------------------------------------
# choosing implementations
# ---------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """Implementations to run, and those left out with the reason (printed, never crashing)."""

    run: list[ImplInfo] = field(default_factory=list)
    unavailable: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def default_baseline() -> str:
    for info in registry.all_impls():
        if info.baseline:
            return info.name
    return "naive_loop"


def select_impls(names: Iterable[str] | None, device: str, baseline: str) -> Selection:
    """Named implementations (all registered ones if None), split into run / unavailable / skipped.

    Unnamed implementations that need Triton are skipped on the CPU (interpreter timings mean
    nothing). The baseline is always run when available, so speedups have a denominator.
    """
    names = list(names) if names else None
    chosen = [registry.get(n) for n in names] if names else registry.all_impls()
    if names and baseline not in names:
        chosen = [registry.get(baseline), *chosen]
    selection = Selection()
    for info in chosen:
        ok, reason = info.available(device)
        if not ok:
            selection.unavailable.append((info.name, reason))
        elif device == "cpu" and "triton" in info.requires and not names:
            selection.skipped.append((info.name, TRITON_ON_CPU_REASON))
        elif info.kind == "deployed" and not names:
            selection.skipped.append((info.name, DEPLOYED_REASON))
        else:
            selection.run.append(info)
    # baseline first: its time is the denominator of every speedup
    selection.run.sort(key=lambda info: info.name != baseline)
    return selection


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    rows: list[dict]
    selection: Selection
    ceilings: Ceilings | None
    unsupported: list[tuple[str, str]] = field(default_factory=list)


def count_steps(specs: list[MoESpec], tokens: list[int], selection: Selection) -> int:
    """How many (spec, T, implementation) measurements run_bench will make (for a progress bar)."""
    return sum(len(tokens) for spec in specs for info in selection.run if not info.spec_unsupported(spec))


def _fresh_seed() -> int:
    return secrets.randbelow(2**31)


def run_bench(
    specs: list[MoESpec],
    tokens: list[int],
    selection: Selection,
    device: str | torch.device,
    *,
    baseline: str,
    ceilings: Ceilings | None,
    options: BenchOptions = BenchOptions(),
    on_step: Callable[[str], None] | None = None,
    rows: list[dict] | None = None,
) -> BenchResult:
    """Benchmark every (spec, T, implementation); rows are appended to `rows` as they come."""
    device = torch.device(device)
    env = environment(device)
    rows = [] if rows is None else rows
    unsupported: list[tuple[str, str]] = []
    for spec in specs:
        impls = [info for info in selection.run if not info.spec_unsupported(spec)]
        unsupported += [
            (info.name, f"{spec_label(spec)}: {info.spec_unsupported(spec)}")
            for info in selection.run
            if info.spec_unsupported(spec)
        ]
        weight_seed = options.seed if options.seed is not None else _fresh_seed()
        weights = random_weights(spec, device=device, seed=weight_seed)
        for num_tokens in tokens:
            input_seed = options.seed + 1 + num_tokens if options.seed is not None else _fresh_seed()
            cell = make_cell(spec, num_tokens, weights, weight_seed, input_seed)
            cell_rows: list[dict] = []
            for info in impls:
                if on_step:
                    on_step(f"{spec_label(spec)} {dtype_name(spec.dtype)} T={num_tokens} {info.name}")
                cell_rows += bench_impl(info, cell, device, ceilings, options, env, baseline)
            fill_speedups(cell_rows, baseline)
            rows += cell_rows
            del cell
        del weights
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return BenchResult(rows, selection, ceilings, list(dict.fromkeys(unsupported)))
