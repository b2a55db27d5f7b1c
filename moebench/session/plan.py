"""The session's plan: steps in priority order, each a list of items the runner checks against the
deadline one at a time (an item that cannot finish in the time left is skipped, with a line).

1. environment and ceilings      2. GPU tests (pytest, sharded)
3. verify: the first presets at a few T, plus one gradient case
4. bench: CUDA-graph rows of every real preset x T, then the report
5. tuned vs default: a few presets x three token buckets
6. anything left: the other presets' verify, eager rows, more tuning, extra cells
Each item's `cost(model)` gives its estimate and records in the model's ledger what it compiles
and draws; `run(ctx)` does the work through moebench.session.work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from tabulate import tabulate

from moebench.presets import get_preset
from moebench.session import pytest_step, work
from moebench.session.config import SessionConfig
from moebench.session.cost import CostModel


@dataclass
class Item:
    step: str
    label: str
    kind: str  # estimates of one kind are corrected together by what the runner measures
    cost: Callable[[CostModel], float]
    run: Callable[[work.Context], None]
    status: str = "pending"  # pending, done, failed, skipped
    estimate_s: float = 0.0
    actual_s: float = 0.0
    detail: str = ""


STEPS = ("environment", "tests", "verify", "bench", "tune", "later")
STEP_TITLES = {
    "environment": "environment and ceilings",
    "tests": "GPU tests",
    "verify": "verify",
    "bench": "bench (CUDA graphs on a GPU)",
    "tune": "tuned vs default",
    "later": "anything left",
}


def _cells(config: SessionConfig, presets, tokens) -> list:
    return [(get_preset(p, config.dtype).replace(quant=config.quant), t) for p in presets for t in tokens]


def _precompile(step: str, impls, cells) -> Item:
    triples = [(impl, spec, t) for spec, t in cells for impl in impls]
    return Item(
        step,
        f"precompile the {step} kernels",
        "precompile",
        lambda m: m.precompile_s(triples),
        lambda ctx: work.precompile(ctx, triples),
    )


def _verify_items(step: str, config: SessionConfig, presets) -> list[Item]:
    impls = list(config.verify_impls)
    items = []
    for spec, t in _cells(config, presets, config.verify_tokens):
        items.append(
            Item(step, f"verify {work.label(spec, t)}", "verify",
                 lambda m, s=spec, t=t: m.verify_s(impls, s, t),
                 lambda ctx, s=spec, t=t: work.verify(ctx, impls, s, t))
        )  # fmt: skip
    return items


def _bench_items(step: str, config: SessionConfig, impls, presets, tokens, *, graph: bool) -> list[Item]:
    items, kind = [], "bench" if graph else "eager"
    for spec, t in _cells(config, presets, tokens):
        items.append(
            Item(step, f"{kind} {work.label(spec, t)}", kind,
                 lambda m, s=spec, t=t: m.bench_s(work.bench_impls(config, m, impls, s, t, graph), s, t, graph),
                 lambda ctx, s=spec, t=t: work.bench(ctx, impls, s, t, graph=graph))
        )  # fmt: skip
    return items


def _tune_items(step: str, config: SessionConfig, impls) -> list[Item]:
    items = []
    for impl in impls:
        for spec, bucket in _cells(config, config.tune_presets, config.tune_buckets):
            items.append(
                Item(step, f"tune {impl} {work.label(spec, bucket)}", "tune",
                     lambda m, i=impl, s=spec, b=bucket: m.tune_s(i, s, b, config.tune_max_configs),
                     lambda ctx, i=impl, s=spec, b=bucket: work.tune(ctx, i, s, b))
            )  # fmt: skip
    return items


def build_plan(config: SessionConfig, compiled: bool) -> list[Item]:
    """Every item of the session in priority order. compiled: Triton kernels compile here (a GPU),
    so each step that meets new kernels first compiles them in parallel."""
    plan = [
        Item("environment", "device, versions and ceilings", "env", lambda m: 5.0, work.environment),
        Item(
            "tests",
            f"pytest -m '{config.tests_expr}'",
            "tests",
            lambda m: pytest_step.estimate_s(config, m),
            pytest_step.run_tests,
        ),
    ]
    verify_cells = _cells(config, config.verify_presets, config.verify_tokens)
    if compiled:
        plan.append(_precompile("verify", config.verify_impls, verify_cells))
    plan += _verify_items("verify", config, config.verify_presets)
    impl, preset, tokens = config.grad_case
    spec = get_preset(preset, config.dtype)
    plan.append(
        Item("verify", f"gradients {impl} {work.label(spec, tokens)}", "grad",
             lambda m: m.grad_s(impl, spec, tokens), lambda ctx: work.grad(ctx, impl, spec, tokens))
    )  # fmt: skip
    bench_cells = _cells(config, config.bench_presets, config.bench_tokens)
    if compiled:
        plan.append(_precompile("bench", config.bench_impls, bench_cells))
    plan += _bench_items("bench", config, config.bench_impls, config.bench_presets, config.bench_tokens, graph=True)
    plan.append(Item("bench", "report (tables and plots)", "report", lambda m: 10.0, work.report))
    plan += _tune_items("tune", config, config.tune_impls)
    plan += _verify_items("later", config, config.later_verify_presets)
    if config.eager_rows:
        grid = (config.bench_impls, config.bench_presets, config.bench_tokens)
        plan += _bench_items("later", config, *grid, graph=False)
    plan += _tune_items("later", config, config.later_tune_impls)
    for extra in config.extras:
        extra_config = replace(config, dtype=extra.dtype, quant=extra.quant)
        plan += _bench_items("later", extra_config, extra.impls, extra.presets, extra.tokens, graph=True)
    if config.eager_rows or config.extras:  # the report again, with the rows added since
        plan.append(Item("later", "report (tables and plots)", "report", lambda m: 10.0, work.report))
    return plan


def estimate(plan: list[Item], model: CostModel) -> None:
    """Fill estimate_s of every pending item, in plan order, from an empty ledger: done items are
    accounted (what they compiled and drew is paid for), skipped and failed ones are not."""
    model.reset()
    for item in plan:
        if item.status == "pending":
            item.estimate_s = item.cost(model)
        elif item.status == "done":
            item.cost(model)


def plan_table(plan: list[Item], deadline_s: float, startup_s: float) -> str:
    """The plan as printed first: per step, its items and estimate, and the running total."""
    rows, total = [["startup", "imports, CUDA context", "", f"{startup_s:.0f}", f"{startup_s:.0f}"]], startup_s
    for step in STEPS:
        items = [i for i in plan if i.step == step]
        if not items:
            continue
        seconds = sum(i.estimate_s for i in items if i.status == "pending")
        total += seconds
        fits = "" if total <= deadline_s else "  (past the deadline: skipped unless time is left)"
        rows.append([step, STEP_TITLES[step], len(items), f"{seconds:.0f}", f"{total:.0f}{fits}"])
    table = tabulate(rows, headers=["step", "what", "items", "estimate s", "cumulative s"])
    return f"{table}\ndeadline {deadline_s:.0f} s; estimated total {total:.0f} s"
