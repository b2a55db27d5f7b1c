"""The benchmark run behind `moebench bench`: choose implementations, then for every (spec, T)
cell measure each of them (moebench.bench.measure) and collect the rows (moebench.bench.rows).

Weights come from `random_weights` (one fresh seed per spec) and x from `random_inputs` (one fresh
seed per (spec, T)), drawn by moebench.bench.cells.Cells; every implementation of a cell sees the
same tensors, and both seeds are recorded in the row so the cell can be rerun exactly.
Speedup = baseline's best time / time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from moebench import registry
from moebench.bench.cells import Cells
from moebench.bench.measure import BenchOptions, bench_impl
from moebench.bench.rows import fill_speedups
from moebench.ceilings import Ceilings
from moebench.presets import spec_label
from moebench.registry import ImplInfo
from moebench.results import environment
from moebench.spec import MoESpec, dtype_name

TRITON_ON_CPU_REASON = (
    "Triton kernels run in the interpreter on the CPU: timing it is meaningless (name it with --impl to time anyway)"
)
DEPLOYED_REASON = (
    "exported-model runtimes are compared by `moebench export --bench` (name it with --impl to include it here)"
)


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


def run_bench(
    specs: list[MoESpec],
    tokens: list[int],
    selection: Selection,
    device: str | torch.device,
    *,
    baseline: str,
    ceilings: Ceilings | None,
    options: BenchOptions | None = None,
    on_step: Callable[[str], None] | None = None,
    rows: list[dict] | None = None,
    cells: Cells | None = None,
) -> BenchResult:
    """Benchmark every (spec, T, implementation); rows are appended to `rows` as they come.
    options: how to time (None: BenchOptions()). cells: the cells' source when they are shared with
    other work (moebench session); default: drawn here, each spec's dropped once it is measured."""
    options = BenchOptions() if options is None else options
    device = torch.device(device)
    env = environment(device)
    rows = [] if rows is None else rows
    source = Cells(device, seed=options.seed) if cells is None else cells
    unsupported: list[tuple[str, str]] = []
    for spec in specs:
        impls = [info for info in selection.run if not info.spec_unsupported(spec)]
        unsupported += [
            (info.name, f"{spec_label(spec)}: {info.spec_unsupported(spec)}")
            for info in selection.run
            if info.spec_unsupported(spec)
        ]
        for num_tokens in tokens:
            cell = source.get(spec, num_tokens)
            cell_rows: list[dict] = []
            for info in impls:
                if on_step:
                    on_step(f"{spec_label(spec)} {dtype_name(spec.dtype)} T={num_tokens} {info.name}")
                cell_rows += bench_impl(info, cell, device, ceilings, options, env, baseline)
            fill_speedups(cell_rows, baseline)
            rows += cell_rows
        if cells is None:
            source.drop(spec)
    return BenchResult(rows, selection, ceilings, list(dict.fromkeys(unsupported)))
