"""The bench row: its columns (long format, one measurement per row), its status values, the
throughput metrics computed from a time, and speedups against the baseline.

Used by the runner (moebench.bench.run), by tools that time outside the registry (export's ONNX
Runtime sessions, through moebench.bench.measure.measure_callable) and read back by moebench.report.
"""

from __future__ import annotations

import math

import torch

from moebench.ceilings import Ceilings
from moebench.presets import spec_label
from moebench.results import environment
from moebench.spec import MoESpec, dtype_name
from moebench.timing import SPREAD_BOUND, Timing

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
    "cache",
    "threads",
    "median_ms",
    "p20_ms",
    "p80_ms",
    "runs",
    "spread",
    "noisy",
    "calls_per_sample",
    "speedup",
    "tflops",
    "weight_gbps",
    "active_experts",
    "flops",
    "weight_bytes",
    "pct_gemm_ceiling",
    "pct_mem_ceiling",
    "gemm_ceiling_tflops",
    "mem_ceiling_gbps",
    "parity_rel_l2",
    "parity_tol",
    "parity_ok",
    "status",
    "drops_tokens",
    "note",
    "weight_seed",
    "input_seed",
)

# status values: ok (timed, parity passed), parity-fail (timed, parity failed), error (crashed),
# invalid (timed above a ceiling measured in the same run: a measurement artefact, not a result)
STATUS_OK, STATUS_PARITY_FAIL, STATUS_ERROR, STATUS_INVALID = "ok", "parity-fail", "error", "invalid"


def _ratio(num: float, den: float) -> float:
    return num / den if den and den > 0 and not math.isnan(den) else float("nan")


def row_metrics(spec: MoESpec, num_tokens: int, median_ms: float, n_active: int, ceilings: Ceilings | None) -> dict:
    """Throughput columns for one time: TFLOP/s, weight GB/s and their % of the ceilings (GEMM, memory)."""
    flops = spec.flops(num_tokens)
    weight_bytes = spec.expert_weight_bytes(n_active)
    seconds = median_ms * 1e-3
    tflops = _ratio(flops, seconds) / 1e12
    gbps = _ratio(weight_bytes, seconds) / 1e9
    gemm = ceilings.gemm(spec.dtype) if ceilings else float("nan")
    mem = ceilings.mem_gbps if ceilings else float("nan")
    return {
        "tflops": tflops,
        "weight_gbps": gbps,
        "active_experts": n_active,
        "flops": flops,
        "weight_bytes": weight_bytes,
        "pct_gemm_ceiling": 100 * _ratio(tflops, gemm),
        "pct_mem_ceiling": 100 * _ratio(gbps, mem),
        "gemm_ceiling_tflops": gemm,
        "mem_ceiling_gbps": mem,
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
    cache: str = "",
) -> dict:
    """One long-format row. status defaults to ok / parity-fail (from parity_ok) / error (no timing),
    and to invalid when the time puts the row above a ceiling measured in the same run."""
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
            cache=cache,
            threads=torch.get_num_threads() if torch.device(device).type == "cpu" else "",
            median_ms=timing.median_ms,
            p20_ms=timing.p20_ms,
            p80_ms=timing.p80_ms,
            runs=timing.runs,
            spread=timing.spread,
            noisy=bool(timing.spread > SPREAD_BOUND),
            calls_per_sample=timing.calls_per_sample,
            speedup=_ratio(baseline_ms, timing.median_ms) if baseline_ms else float("nan"),
        )
        row.update(row_metrics(spec, num_tokens, timing.median_ms, n_active, ceilings))
    if status is None:
        status = STATUS_ERROR if timing is None else (STATUS_PARITY_FAIL if parity_ok is False else STATUS_OK)
    above = above_ceiling(row)
    if above:
        status = STATUS_INVALID if status == STATUS_OK else status
        note = "; ".join(n for n in (f"not a result: {above}", note) if n)
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


def above_ceiling(row: dict) -> str:
    """Why a row's throughput exceeds 100% of a ceiling measured in the same run ('' when it does not)."""
    reasons = []
    for column, what in (("pct_gemm_ceiling", "TFLOP/s"), ("pct_mem_ceiling", "weight GB/s")):
        pct = row.get(column)
        if isinstance(pct, float) and pct > 100:
            reasons.append(f"{what} at {pct:.0f}% of the measured ceiling")
    return ", ".join(reasons)


def fill_speedups(rows: list[dict], baseline: str) -> None:
    """Set speedup = (baseline's best valid time on the same cell) / time, for every timed row."""
    best: dict[tuple, float] = {}
    for row in rows:
        valid = row.get("status") != STATUS_INVALID
        if row["impl"] == baseline and valid and isinstance(row.get("median_ms"), float):
            key = _cell_key(row)
            best[key] = min(best.get(key, math.inf), row["median_ms"])
    for row in rows:
        if isinstance(row.get("median_ms"), float):
            base = best.get(_cell_key(row))
            row["speedup"] = _ratio(base, row["median_ms"]) if base is not None else float("nan")
            row["baseline"] = baseline


def _cell_key(row: dict) -> tuple:
    return (row["preset"], row["E"], row["k"], row["H"], row["I"], row["activation"], row["dtype"], row["T"])
