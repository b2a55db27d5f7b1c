"""Measure the expert-parallel layer on P local processes and print each rank's pairs, bytes and phase
times beside the traffic MODEL's bytes for the same routing.

    python -m moebench.ep.run --ep 2 --preset small-8x2 --tokens 256 --routing zipf

Until the registry takes a precomputed routing, the local compute is the fp64 reference math (slow and
not what a deployment runs): the dispatch and combine times and all bytes are real, the compute time is
not representative. `moebench bench --ep P` will replace this script.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from tabulate import tabulate

from moebench.ep.compute import rank_layer, reference_local_compute
from moebench.ep.draws import KINDS, draw_routing, expert_loads
from moebench.ep.launch import run_ranks
from moebench.ep.layer import ep_forward
from moebench.ep.measure import PHASES, EPStats, summarize
from moebench.ep.model import traffic_model
from moebench.ep.placement import Placement
from moebench.presets import get_preset
from moebench.routing import route
from moebench.spec import MoESpec
from moebench.weights import random_inputs, random_weights


def split_tokens(num_tokens: int, ranks: int) -> list[int]:
    """Tokens per rank, as even as possible (the first ranks get one more)."""
    return [num_tokens // ranks + (r < num_tokens % ranks) for r in range(ranks)]


def _placement(spec: MoESpec, ranks: int, layout: str, extra: int, topk_ids: torch.Tensor) -> Placement:
    placement = getattr(Placement, layout)(spec.num_experts, ranks)
    return placement.with_redundant(expert_loads(topk_ids, spec.num_experts), extra) if extra else placement


def measure_rank(rank: int, world: int, spec: MoESpec, tokens: list[int], args: argparse.Namespace) -> tuple:
    """One rank: (stats of the last run, median seconds per phase, all tokens' topk_ids, placement)."""
    weights = random_weights(spec, seed=args.seed)
    x = random_inputs(spec, sum(tokens), seed=args.seed + 1)
    if args.routing == "router":
        topk_weights, topk_ids = route(x, weights)
    else:
        topk_weights, topk_ids = draw_routing(x.shape[0], spec.num_experts, spec.top_k, args.routing, seed=args.seed)
    placement = _placement(spec, world, args.placement, args.extra, topk_ids)
    lo, hi = sum(tokens[:rank]), sum(tokens[: rank + 1])
    local = rank_layer(weights, placement, rank)
    samples: dict[str, list[float]] = {p: [] for p in PHASES}
    for i in range(args.warmup + args.repeats):
        stats = EPStats()
        mine = (x[lo:hi], topk_weights[lo:hi], topk_ids[lo:hi])
        ep_forward(*mine, placement, local, reference_local_compute, stats=stats)
        for phase in PHASES:
            if i >= args.warmup:
                samples[phase].append(stats.seconds[phase])
    return stats, {p: statistics.median(v) for p, v in samples.items()}, topk_ids, placement


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ep", type=int, default=2, help="ranks (processes, gloo on the CPU)")
    parser.add_argument("--preset", default="small-8x2")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--tokens", type=int, default=256, help="tokens of all ranks together")
    parser.add_argument("--routing", default="router", choices=("router", *KINDS))
    parser.add_argument("--placement", default="contiguous", choices=("contiguous", "round_robin"))
    parser.add_argument("--extra", type=int, default=0, help="redundant expert copies per rank")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = get_preset(args.preset, args.dtype)
    tokens = split_tokens(args.tokens, args.ep)
    results = run_ranks(measure_rank, args.ep, (spec, tokens, args), timeout_s=600)
    stats = [r[0] for r in results]
    topk_ids, placement = results[0][2], results[0][3]
    model = traffic_model(topk_ids, tokens, placement, spec.hidden, spec.dtype).bytes()
    rows = []
    for s, (_, seconds, _, _) in zip(stats, results):
        b = s.link_bytes()
        rows.append(
            [s.rank, s.tokens, s.pairs_sent, s.pairs_received, s.self_pairs]
            + [b["dispatch_sent"], model["dispatch_sent"][s.rank], b["combine_sent"], model["combine_sent"][s.rank]]
            + [round(seconds[p] * 1e3, 3) for p in PHASES]
        )
    headers = ["rank", "tokens", "pairs out", "pairs in", "own pairs", "dispatch B out", "MODEL", "combine B out"]
    headers += ["MODEL", *(f"{p} ms (median)" for p in PHASES)]
    print(f"{spec.describe()}  EP={args.ep}  routing={args.routing}  placement={args.placement}+{args.extra}")
    print(f"torch {torch.__version__}, gloo, {args.repeats} timed runs after {args.warmup} warm-up; compute = fp64 ref")
    print(tabulate(rows, headers=headers))
    print(f"load imbalance (max/mean pairs computed per rank): {summarize(stats)['imbalance']:.3f}")


if __name__ == "__main__":
    main()
