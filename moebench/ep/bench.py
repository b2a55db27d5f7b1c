"""`moebench bench --ep P`: the layer expert-parallel over P local processes, timed phase by phase.

Each rank holds T tokens (--tokens is per rank, as in data-parallel serving) and E/P experts (plus
--redundant copies). For every (preset, dtype, T, implementation) it runs warm-up and timed forwards of
`ep_forward` with the implementation as the local compute, times dispatch, compute and combine apart
(barriers between phases), and checks the output against the fp64 reference of all P*T tokens. A
forward's time is the sum over phases of the slowest rank's time; rows hold the median and p20/p80 of
that over the timed forwards and each phase's median, the link bytes of the busiest rank (measured, and
the traffic MODEL's for the same routing), and the load imbalance (max/mean pairs computed per rank).
gloo on the CPU (rank processes split the cores); NCCL with one GPU per rank on CUDA (written for it,
not yet run on a GPU). The routing is the router's, or drawn: uniform, zipf (exponent --zipf-s) or hot.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

from moebench import registry
from moebench.ep.compute import local_unsupported, rank_layer, registry_local_compute
from moebench.ep.draws import KINDS, draw_routing, expert_loads
from moebench.ep.launch import run_ranks
from moebench.ep.layer import ep_forward
from moebench.ep.measure import PHASES, EPStats, summarize
from moebench.ep.model import traffic_model
from moebench.ep.placement import Placement
from moebench.errors import MoEInputError
from moebench.parity import compare
from moebench.reference import reference_from_routing, reference_moe
from moebench.routing import Routing, route
from moebench.spec import MoESpec
from moebench.weights import random_inputs, random_weights

ROUTINGS = ("router", *KINDS)
METHOD = "per-phase wallclock, barriers"  # CUDA events on a GPU
EP_ONLY = ("routing", "zipf_s", "hot_fraction", "redundant", "placement")


def add_args(parser: argparse.ArgumentParser) -> None:
    """The --ep options of `moebench bench`."""
    g = parser.add_argument_group("expert parallelism (--ep P; moebench.ep)")
    g.add_argument("--ep", type=int, default=None, metavar="P", help="run expert-parallel over P local ranks")
    g.add_argument("--routing", choices=ROUTINGS, default=None, help="with --ep: the router's (default) or drawn")
    g.add_argument("--zipf-s", type=float, default=None, help="with --routing zipf: the exponent (default 1.2)")
    g.add_argument("--hot-fraction", type=float, default=None, help="with --routing hot: tokens on it (default 0.5)")
    g.add_argument("--redundant", type=int, default=None, help="with --ep: redundant expert copies per rank")
    g.add_argument("--placement", choices=("contiguous", "round_robin"), default=None, help="with --ep")


def single_device(rows: list[dict]) -> None:
    """Mark single-device bench rows as such in the EP columns: ep 1, the router's routing."""
    for row in rows:
        row.setdefault("ep", 1)
        row.setdefault("routing", "router")


def check_args(args: argparse.Namespace) -> None:
    """An --ep option without --ep, or a bad P, is one clear error."""
    if args.ep is None:
        given = [name for name in EP_ONLY if getattr(args, name) is not None]
        if given:
            raise MoEInputError(f"--{given[0].replace('_', '-')}: only with --ep P")
    elif args.ep < 1:
        raise MoEInputError(f"--ep: expected a positive number of ranks, got {args.ep}")


@dataclass(frozen=True)
class Cell:
    spec: MoESpec
    tokens: int  # per rank
    impl: str


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    routing: str
    zipf_s: float
    hot_fraction: float
    placement: str
    redundant: int
    device: str
    warmup: int
    reps: int
    weight_seed: int
    input_seed: int
    threads: int | None


def _problem(plan: Plan, cell: Cell, world: int, device: str):
    """(weights, x of all ranks' tokens, routing of all tokens or None for the router, placement)."""
    spec = cell.spec
    weights = random_weights(spec, seed=plan.weight_seed).to(device)
    x = random_inputs(spec, cell.tokens * world, seed=plan.input_seed).to(device)
    drawn = None
    if plan.routing != "router":
        drawn = draw_routing(
            x.shape[0], spec.num_experts, spec.top_k, plan.routing,
            zipf_s=plan.zipf_s, hot_fraction=plan.hot_fraction, seed=plan.input_seed,
        )  # fmt: skip
        drawn = Routing(drawn[0].to(device), drawn[1].to(device))
    placement = getattr(Placement, plan.placement)(spec.num_experts, world)
    if plan.redundant:
        loads = expert_loads((drawn or route(x, weights)).ids, spec.num_experts)
        placement = placement.with_redundant(loads, plan.redundant)
    return weights, x, drawn, placement


def bench_rank(rank: int, world: int, plan: Plan) -> list[tuple]:
    """On one rank, per cell: (phase seconds per timed forward, last stats, output, topk_ids) or an error."""
    if plan.threads:
        torch.set_num_threads(plan.threads)
    device = f"cuda:{rank}" if plan.device == "cuda" else "cpu"
    results = []
    for cell in plan.cells:
        weights, x, drawn, placement = _problem(plan, cell, world, device)
        mine = slice(rank * cell.tokens, (rank + 1) * cell.tokens)
        routing = route(x[mine], weights) if drawn is None else Routing(drawn.weights[mine], drawn.ids[mine])
        layer = rank_layer(weights, placement, rank)
        checked, fast = (registry_local_compute(cell.impl, check=c) for c in (True, False))
        samples, stats, y = [], EPStats(), None
        for i in range(plan.warmup + plan.reps):  # the first forward checks the inputs, timed ones do not
            stats = EPStats()
            y = ep_forward(x[mine], *routing, placement, layer, fast if i else checked, stats=stats)
            if i >= plan.warmup:
                samples.append(stats.seconds)
        results.append((samples, stats, y.cpu(), routing.ids.cpu()))
    return results


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _rows(plan: Plan, cell: Cell, ranks: list[tuple], world: int, env: dict) -> tuple[dict, list[list]]:
    """The CSV row of one cell and its per-rank table rows."""
    from moebench.bench.rows import make_row  # the bench row's columns, then the EP ones
    from moebench.timing import _summarise

    weights, x, drawn, placement = _problem(plan, cell, world, "cpu")
    samples = [[r[0][i] for r in ranks] for i in range(plan.reps)]  # [rep][rank] -> phase seconds
    phase_ms = {p: [1e3 * max(s[p] for s in rep) for rep in samples] for p in PHASES}
    total = [sum(phase_ms[p][i] for p in PHASES) for i in range(plan.reps)]
    stats = [r[1] for r in ranks]
    y = torch.cat([r[2] for r in ranks])
    ref = reference_moe(x, weights) if drawn is None else reference_from_routing(x, weights, drawn)
    parity = compare(y, ref, cell.spec.dtype)
    topk_ids = torch.cat([r[3] for r in ranks])
    model = traffic_model(topk_ids, [cell.tokens] * world, placement, cell.spec.hidden, cell.spec.dtype).bytes()
    summary = summarize(stats)
    timing = _summarise(total, METHOD)
    info = registry.get(cell.impl)
    row = make_row(
        impl=cell.impl, kind=info.kind, spec=cell.spec, num_tokens=cell.tokens, timing=timing,
        n_active=max(len(e) for e in placement.rank_experts), ceilings=None, parity_rel_l2=parity.rel_l2,
        parity_tol=parity.tolerance, parity_ok=parity.ok, note="" if parity.ok else parity.message,
        weight_seed=plan.weight_seed, input_seed=plan.input_seed, env=env,
    )  # fmt: skip
    row["threads"] = plan.threads or max(1, (os.cpu_count() or 1) // world)  # as moebench.ep.launch sets
    row.update(
        ep=world,
        routing=plan.routing,
        zipf_s=plan.zipf_s if plan.routing == "zipf" else "",
        hot_fraction=plan.hot_fraction if plan.routing == "hot" else "",
        placement=plan.placement,
        redundant=plan.redundant,
        **{f"{p}_ms": _median(phase_ms[p]) for p in PHASES},
        dispatch_bytes_max=max(s.link_bytes()["dispatch_sent"] + s.link_bytes()["dispatch_received"] for s in stats),
        combine_bytes_max=max(s.link_bytes()["combine_sent"] + s.link_bytes()["combine_received"] for s in stats),
        model_dispatch_bytes_max=max(a + b for a, b in zip(model["dispatch_sent"], model["dispatch_received"])),
        model_combine_bytes_max=max(a + b for a, b in zip(model["combine_sent"], model["combine_received"])),
        imbalance=summary["imbalance"],
        pairs_max=summary["pairs_max"],
        pairs_mean=summary["pairs_mean"],
    )
    per_rank = []
    for s in stats:
        b = s.link_bytes()
        per_rank.append([s.rank, s.tokens, s.pairs_computed, b["dispatch_sent"], b["dispatch_received"]])
        per_rank[-1] += [b["combine_sent"], b["combine_received"], *(1e3 * s.seconds[p] for p in PHASES)]
    return row, per_rank


def run(args: argparse.Namespace, device: str, specs: list[MoESpec], tokens: list[int], out_path: Path) -> int:
    """Measure every cell on args.ep ranks, print the time split, bytes per rank and imbalance, write the
    rows to `out_path`; 0 when every row passed parity, else 1."""
    from moebench.results import environment, write_rows

    world = args.ep
    if device == "cuda" and world > torch.cuda.device_count():
        raise MoEInputError(f"--ep: {world} ranks need {world} GPUs (one each), found {torch.cuda.device_count()}")
    names = args.impl or ["grouped_mm" if registry.get("grouped_mm").available(device)[0] else "naive_loop"]
    cells, left_out = [], []
    for name in names:
        info = registry.get(name)
        ok, why = info.available(device)
        if not ok:
            raise MoEInputError(f"--impl: {name} is not available on {device}: {why}")
        for spec in specs:
            why = local_unsupported(info, spec)
            if why:
                left_out.append([name, spec.describe(), why])
            cells += [] if why else [Cell(spec, t, name) for t in tokens]
    if left_out:
        print("not run (the local compute cannot take these):\n" + tabulate(left_out, headers=["impl", "spec", "why"]))
    plan = Plan(
        tuple(cells), args.routing or "router",
        1.2 if args.zipf_s is None else args.zipf_s, 0.5 if args.hot_fraction is None else args.hot_fraction,
        args.placement or "contiguous", args.redundant or 0, device,
        2 if args.warmup is None else args.warmup, 10 if args.reps is None else args.reps,
        secrets.randbelow(2**31) if args.seed is None else args.seed,
        secrets.randbelow(2**31) if args.seed is None else args.seed + 1,
        args.threads,
    )  # fmt: skip
    routing = plan.routing + (f" (s={plan.zipf_s:g})" if plan.routing == "zipf" else "")
    routing += f" (fraction {plan.hot_fraction:g})" if plan.routing == "hot" else ""
    backend = "gloo" if device == "cpu" else "nccl"
    print(f"EP={world} ({backend}), routing {routing}, placement {plan.placement}+{plan.redundant} redundant/rank, "
          f"{plan.reps} timed forwards after {plan.warmup} warm-up; T = tokens per rank")  # fmt: skip
    results = run_ranks(bench_rank, world, (plan,), backend=backend, timeout_s=3600)
    env = environment(device)
    env["device_name"] = f"{env['device_name']} x {world} ranks"
    rows = []
    headers = ["rank", "tokens", "pairs", "disp B out", "disp B in", "comb B out", "comb B in"]
    headers += [f"{p} ms" for p in PHASES]
    for i, cell in enumerate(plan.cells):
        row, per_rank = _rows(plan, cell, [r[i] for r in results], world, env)
        rows.append(row)
        split = " + ".join(f"{p} {row[f'{p}_ms']:.3f}" for p in PHASES)
        print(f"\n{cell.impl} {cell.spec.describe()} T={cell.tokens}/rank: {split} = {row['median_ms']:.3f} ms "
              f"(median; p20-p80 {row['p20_ms']:.3f}-{row['p80_ms']:.3f}); imbalance {row['imbalance']:.3f}; "
              f"parity {row['status']}")  # fmt: skip
        print(tabulate(per_rank, headers=headers, floatfmt=".3f"))
    if rows:
        write_rows(out_path, rows)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"\n{len(rows)} EP measurement(s); " + (f"wrote {out_path}" if rows else "nothing measured, no file written"))
    if failed:
        print(f"{len(failed)} row(s) failed parity (status column)")
    return 1 if failed or not rows else 0
