"""Cases for the multi-process expert-parallel tests and the function every spawned rank runs.

Every rank rebuilds the same global problem from the case's seed, keeps its own tokens, routes them
(the router, or a drawn routing) and runs `ep_forward` with the case's local compute (the fp64 reference
math, or a registry implementation on the case's device); the test process compares the concatenated
outputs with the single-process fp64 reference and the ranks' byte counts with the traffic model.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from moebench.ep import (
    EPStats,
    Placement,
    draw_routing,
    ep_forward,
    expert_loads,
    rank_layer,
    reference_local_compute,
    registry_local_compute,
    slice_experts,
)
from moebench.ep.launch import preload
from moebench.errors import MoEInputError
from moebench.presets import get_preset
from moebench.reference import reference_from_routing, reference_moe
from moebench.routing import Routing, route
from moebench.spec import MoESpec, RouterSpec
from moebench.weights import MoEWeights, random_inputs, random_weights, steer_routing

# hf_experts imports transformers' Mixtral experts on first use: once in the fork server, not once per rank
preload("transformers.models.mixtral.modeling_mixtral")


@dataclass(frozen=True)
class EPCase:
    name: str
    preset: str
    dtype: str
    tokens: tuple[int, ...]  # per rank
    placement: str = "contiguous"  # contiguous | round_robin | owner
    owner: tuple[int, ...] = ()  # expert -> rank, for placement="owner"
    extra_per_rank: int = 0  # redundant experts per rank (Placement.with_redundant on the drawn loads)
    always: tuple[int, ...] = ()  # experts steered into every token's top-k
    never: tuple[int, ...] = ()  # experts steered out of every token's top-k
    draw: str = ""  # a drawn routing kind instead of the router
    broken: bool = False  # negative control: each rank's local ids point at the wrong experts' weights
    impl: str = ""  # the registry implementation computing each rank's pairs ("" = the fp64 reference math)
    device: str = "cpu"  # where that implementation runs (the pairs travel by gloo on the CPU)
    seed: int = 0

    @property
    def spec(self) -> MoESpec:
        return get_preset(self.preset, self.dtype)


def problem(case: EPCase) -> tuple[MoEWeights, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """(weights, x of all tokens, drawn routing of all tokens or None when the router routes)."""
    spec = case.spec
    weights = random_weights(spec, seed=case.seed)
    x = random_inputs(spec, sum(case.tokens), seed=case.seed + 1)
    if case.always or case.never:
        weights, x = steer_routing(weights, x, always=case.always, never=case.never)
    drawn = None
    if case.draw:
        drawn = draw_routing(
            x.shape[0], spec.num_experts, spec.top_k, case.draw, zipf_s=1.2, hot_fraction=0.9, seed=case.seed
        )
    return weights, x, drawn


def reference(case: EPCase) -> tuple[torch.Tensor, torch.Tensor]:
    """(x of all tokens, the single-process fp64 layer output for them)."""
    weights, x, drawn = problem(case)
    return x, reference_moe(x, weights) if drawn is None else reference_from_routing(x, weights, Routing(*drawn))


def placement_of(case: EPCase, drawn: tuple[torch.Tensor, torch.Tensor] | None) -> Placement:
    """The case's placement; redundant copies follow the drawn routing's loads."""
    e, p = case.spec.num_experts, len(case.tokens)
    if case.placement == "owner":
        placement = Placement.from_owner(case.owner, p)
    else:
        placement = getattr(Placement, case.placement)(e, p)
    if case.extra_per_rank:
        placement = placement.with_redundant(expert_loads(drawn[1], e), case.extra_per_rank)
    return placement


def run_cases(rank: int, world: int, cases: list[EPCase]) -> list[tuple[torch.Tensor, torch.Tensor, EPStats]]:
    """On one rank: (its output, its topk_ids, its stats) for every case."""
    results = []
    for case in cases:
        weights, x, drawn = problem(case)
        lo = sum(case.tokens[:rank])
        hi = lo + case.tokens[rank]
        if drawn is None:
            topk_weights, topk_ids = route(x[lo:hi], weights)
        else:
            topk_weights, topk_ids = drawn[0][lo:hi], drawn[1][lo:hi]
        placement = placement_of(case, drawn)
        layer = rank_layer(weights.to(case.device), placement, rank)
        if case.broken:
            wrong = slice_experts(weights, placement.rank_experts[rank][::-1])
            layer = dataclasses.replace(
                layer, routed=MoEWeights(wrong.spec.replace(router=RouterSpec()), **wrong.tensors())
            )
        compute = registry_local_compute(case.impl) if case.impl else reference_local_compute
        out = torch.full_like(x[lo:hi], float("nan"))
        stats = EPStats()
        y = ep_forward(x[lo:hi], topk_weights, topk_ids, placement, layer, compute, out=out, stats=stats)
        results.append((y, topk_ids, stats))
    return results


def sleep_forever(rank: int, world: int) -> None:
    time.sleep(600)


def fail_on_last_rank(rank: int, world: int) -> int:
    if rank == world - 1:
        raise ValueError(f"rank {rank} fails on purpose")
    return rank


def input_errors(rank: int, world: int) -> list[str]:
    """The MoEInputError message of each bad call of ep_forward (one rank); '' where none was raised."""
    spec = get_preset("tiny", "fp32")
    weights = random_weights(spec)
    x = random_inputs(spec, 3)
    topk_weights, topk_ids = route(x, weights)
    placement = Placement.contiguous(4, world)
    local = rank_layer(weights, placement, rank)
    wrong_dtype = lambda *args: reference_local_compute(*args).double()
    calls = [
        (x, topk_weights, topk_ids[:2], placement, local, reference_local_compute),
        (x, topk_weights.bfloat16(), topk_ids, placement, local, reference_local_compute),
        (x, topk_weights, topk_ids, Placement.contiguous(4, world + 1), local, reference_local_compute),
        (
            x,
            topk_weights,
            topk_ids,
            placement,
            rank_layer(weights, Placement.contiguous(4, 4), 0),
            reference_local_compute,
        ),
        (x, topk_weights, topk_ids, placement, local, wrong_dtype),
    ]
    messages = []
    for args in calls:
        try:
            ep_forward(*args)
            messages.append("")
        except MoEInputError as exc:
            messages.append(str(exc))
    return messages
