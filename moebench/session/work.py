"""What each plan item does, through the library's own functions: moebench.parity.run_case and
moebench.gradparity.run_grad_case (verify), moebench.bench.run_bench (bench rows), moebench.tuning
(tune), moebench.report (report.md and plots). Cells (weights, x, the fp64 reference) come from one
moebench.bench.cells.Cells shared by every item, so each (preset, dtype, T) is drawn and its
reference computed once.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from moebench import registry
from moebench.bench import BenchOptions, Selection, fill_speedups, run_bench
from moebench.bench.cells import Cells
from moebench.ceilings import Ceilings, measure_ceilings
from moebench.errors import UnknownImplementationError
from moebench.gradparity import run_grad_case
from moebench.parity import Case, run_case
from moebench.presets import spec_label
from moebench.requirements import requirement_missing
from moebench.session.config import SessionConfig
from moebench.session.cost import CostModel
from moebench.spec import MoESpec, dtype_name


@dataclass
class Context:
    """Everything the items share: where to write, the cost model, the cells and the rows so far."""

    config: SessionConfig
    device: torch.device
    work: Path  # everything here is packed into $OUT/session.tar.gz
    model: CostModel
    log: Callable[[str], None]
    cells: Cells
    ceilings: Ceilings | None = None
    manifest: dict = field(default_factory=dict)
    verify_rows: list[dict] = field(default_factory=list)
    bench_rows: list[dict] = field(default_factory=list)
    tune_rows: list[dict] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)
    time_left: Callable[[], float] = lambda: float("inf")  # seconds to the deadline (the runner's clock)
    budget_s: float = float("inf")  # what the item running now may take (subprocesses are stopped there)


def label(spec: MoESpec, num_tokens: int) -> str:
    return f"{spec_label(spec)} {dtype_name(spec.dtype)} T={num_tokens}"


def usable(name: str, device: str) -> bool:
    """Whether implementation `name` runs on `device` here. Planning a CUDA session on a machine
    without a GPU (--plan-only) counts what lacks only the GPU."""
    try:
        info = registry.get(name)
    except UnknownImplementationError:
        return False
    if info.available(device)[0]:
        return True
    if device != "cuda" or torch.cuda.is_available() or device not in info.devices:
        return False
    return all(requirement_missing(r, device) is None for r in info.requires if r not in ("cuda", "triton"))


# -- 1. environment and ceilings ----------------------------------------------------------------------
def environment(ctx: Context) -> None:
    from moebench.results import environment as env_fields
    from moebench.tuning.device import device_info

    info = device_info(ctx.device)
    ctx.manifest.update(env_fields(ctx.device))
    ctx.manifest.update(device_key=info.key, capability=info.capability, sm_count=info.sm_count)
    ctx.manifest["cpu_cores"], ctx.manifest["machine"] = os.cpu_count(), platform.machine()
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        ctx.manifest.update(memory_gb=round(props.total_memory / 1e9, 1), cuda=torch.version.cuda)
    ctx.log(f"device: {ctx.manifest['device_name']} ({info.key}); torch {torch.__version__}, "
            f"triton {ctx.manifest['triton']}, python {platform.python_version()}")  # fmt: skip
    quick = ctx.device.type == "cpu"
    ctx.ceilings = measure_ceilings(ctx.device, (ctx.config.dtype, "fp64"), quick=quick)
    ctx.manifest["ceilings"] = {"gemm_tflops": ctx.ceilings.gemm_tflops, "copy_gbps": ctx.ceilings.copy_gbps}
    ctx.model.rates = ctx.model.rates.measured(ctx.ceilings, ctx.config.dtype)
    ctx.log(f"ceilings: {ctx.ceilings.describe()}")


# -- 3. verify ----------------------------------------------------------------------------------------
def precompile(ctx: Context, triples: list[tuple[str, MoESpec, int]]) -> None:
    """Compile the default launches of every (impl, spec, T) ahead, in the worker pool."""
    from moebench.compile_check import IMPLS
    from moebench.tuning.precompile import auto_workers, warm_many

    items = [(impl, spec, t, None, False) for impl, spec, t in triples if impl in IMPLS and usable(impl, "cuda")]
    compiled, errors = warm_many(items, max(1, auto_workers("cuda")))
    ctx.log(f"precompiled {compiled} launches of {len(items)} cells" + (f"; {len(errors)} errors" if errors else ""))
    for error in errors[:5]:
        ctx.log(f"  precompile: {error[:300]}")


def _verify_row(step: str, outcome, tokens: int, detail: str = "") -> dict:
    result = getattr(outcome, "result", None)
    return {
        "step": step,
        "impl": outcome.impl,
        "preset": spec_label(outcome.spec),
        "dtype": outcome.dtype,
        "T": tokens,
        "result": "PASS" if outcome.ok else "FAIL",
        "rel_l2": f"{result.rel_l2:.3e}" if result else "",
        "tol": f"{result.tolerance:.0e}" if result else "",
        "seed": outcome.seed,
        "detail": outcome.error or detail or (result.message if result and not result.ok else ""),
    }


def verify(ctx: Context, impls: list[str], spec: MoESpec, num_tokens: int) -> None:
    cell = ctx.cells.get(spec, num_tokens)
    case = Case(f"T={num_tokens}", num_tokens)
    for name in impls:
        if not usable(name, ctx.device.type):
            continue
        info = registry.get(name)
        problem = info.spec_unsupported(spec) or ("" if info.supports(spec.dtype) else f"no {dtype_name(spec.dtype)}")
        if problem:
            ctx.log(f"  {name} does not run {label(spec, num_tokens)}: {problem}")
            continue
        outcome = run_case(info, spec, case, ctx.device, seed=cell.input_seed,
                           inputs=(cell.weights, cell.x), expected=cell.ref)  # fmt: skip
        row = _verify_row("verify", outcome, num_tokens)
        row["seed"] = f"{cell.weight_seed}/{cell.input_seed}"  # weights / inputs
        ctx.verify_rows.append(row)
        ctx.log(f"  {row['result']} {name} {label(spec, num_tokens)} rel_l2={row['rel_l2']} {row['detail']}".rstrip())


def grad(ctx: Context, impl: str, spec: MoESpec, num_tokens: int) -> None:
    outcome = run_grad_case(registry.get(impl), spec, Case(f"T={num_tokens}", num_tokens), ctx.device)
    worst = outcome.worst()
    row = {**_verify_row("grad", outcome, num_tokens, "" if outcome.ok else outcome.summary())}
    if worst:
        row.update(rel_l2=f"{worst[1].rel_l2:.3e}", tol=f"{worst[1].tolerance:.0e}", impl=f"{impl} [d{worst[0]}]")
    ctx.verify_rows.append(row)
    ctx.log(f"  {row['result']} gradients {impl} {label(spec, num_tokens)}: {outcome.summary()}")


# -- 4. bench -----------------------------------------------------------------------------------------
def bench_impls(config: SessionConfig, model: CostModel, impls, spec: MoESpec, num_tokens: int, graph: bool):
    """The implementations a bench item times: those usable here, plus the baseline on graph items
    where its timing is estimated under config.baseline_max_s."""
    chosen = [name for name in impls if usable(name, config.device)]
    baseline = config.baseline
    quick = graph and model.timing_s(baseline, spec, num_tokens, graph=False) <= config.baseline_max_s
    if quick and baseline not in chosen and usable(baseline, config.device):
        chosen.insert(0, baseline)
    return chosen


def bench(ctx: Context, impls, spec: MoESpec, num_tokens: int, *, graph: bool) -> None:
    names = bench_impls(ctx.config, ctx.model, impls, spec, num_tokens, graph)
    if not graph:  # eager rows of what the graph items timed in graphs
        names = [n for n in names if registry.get(n).graph_safe]
    selection = Selection(run=[registry.get(n) for n in names])
    quick = {"reps": 3, "warmup": 1} if ctx.config.quick_timing else {}
    options = BenchOptions(use_graph=graph, eager=not graph, seed=ctx.config.seed, **quick)
    before = len(ctx.bench_rows)
    run_bench([spec], [num_tokens], selection, ctx.device, baseline=ctx.config.baseline, ceilings=ctx.ceilings,
              options=options, rows=ctx.bench_rows, cells=ctx.cells)  # fmt: skip
    fill_speedups(ctx.bench_rows, ctx.config.baseline)  # eager items have no baseline of their own
    for row in ctx.bench_rows[before:]:
        ms = row.get("median_ms")
        timing = f"{ms:.4g} ms" if isinstance(ms, float) else "no time"
        ctx.log(f"  {row['impl']} {row['method']} {timing} {row['status']} {row.get('note', '')}".rstrip())


def report(ctx: Context) -> None:
    from moebench.report.markdown import write_report

    rows = [r for r in ctx.bench_rows if isinstance(r.get("median_ms"), float)]
    if not rows:
        ctx.log("  no timed rows: no report")
        return
    path, plots = write_report(ctx.bench_rows, ctx.work / "report", ["bench.csv"], ctx.config.baseline)
    ctx.log(f"  wrote {path.name} and {len(plots)} plots")


# -- 5. tune ------------------------------------------------------------------------------------------
SEARCHES_PER_JOB = 3  # kernels a job tunes at one bucket (triton_grouped: path and one path's two GEMMs)


def tune(ctx: Context, impl: str, spec: MoESpec, bucket: int) -> None:
    from moebench.results import command_line
    from moebench.tuning.tuner import tune as run_tune

    if not usable(impl, ctx.device.type):
        ctx.log(f"  {impl} is not available on {ctx.device.type}")
        return
    rows = run_tune([spec], impls=[impl], buckets=[bucket], device=ctx.device.type, out_dir=ctx.work / "configs",
                    max_configs=ctx.config.tune_max_configs, budget_s=ctx.budget_s / SEARCHES_PER_JOB, progress=False,
                    command=command_line())  # fmt: skip
    for r in rows:
        speedup = f"{r.speedup:.2f}x" if r.speedup else ""
        ctx.tune_rows.append(
            {"impl": r.impl, "kernel": r.kernel, "preset": spec_label(r.spec), "dtype": dtype_name(r.spec.dtype),
             "T": r.bucket, "status": r.status, "ms": r.ms, "default_ms": r.default_ms, "speedup": speedup,
             "tried": r.tried, "rejected": r.rejected, "config": r.config or "", "detail": r.detail[:200]}
        )  # fmt: skip
        ms = f"{r.ms:.4g} ms vs default {r.default_ms:.4g} ms ({speedup})" if r.ms and r.default_ms else ""
        ctx.log(f"  {r.impl}/{r.kernel} T={r.bucket}: {r.status} {ms} {r.detail[:120]}".rstrip())
