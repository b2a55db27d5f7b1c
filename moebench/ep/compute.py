"""The expert computation on one rank: what it holds (`RankLayer`) and the callables that run its pairs.

A rank receives P (token, slot) pairs: x rows [P, H], the local id of each pair's expert [P] and the
pair's router weight [P] fp32. It runs them as a k=1 problem over its E_local experts and returns
y [P, H] (router weight applied) in x's dtype. Any function with that signature can be the local
compute (`LocalCompute`); two are given: the fp64 reference math, and an adapter that runs any registry
implementation unchanged (its `routing=` argument: the precomputed k=1 routing of the local ids).
The shared experts run through the same callable on the rank's own tokens (`shared_output`): S shared
experts over T tokens are S*T pairs whose weight is the shared gate (or 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from moebench.ep.placement import Placement
from moebench.errors import MoEInputError
from moebench.reference import reference_from_routing
from moebench.registry import ImplInfo
from moebench.routing import Routing
from moebench.spec import MoESpec, RouterSpec, SharedSpec
from moebench.weights import MoEWeights

# (x_pairs [P, H], local_ids [P] int64, pair_weights [P] fp32, local_weights) -> y [P, H] in x's dtype
LocalCompute = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, MoEWeights], torch.Tensor]


def slice_experts(weights: MoEWeights, experts: Sequence[int], *, top_k: int = 1) -> MoEWeights:
    """The layer restricted to `experts` (global ids, in the order given; an id may repeat for a
    replica): expert i of the result is global expert experts[i]. The router rows come along (a k=1
    local problem with precomputed routing does not read them); the spec has len(experts) experts
    (MoEWeights.experts_subset: group limits and shared experts dropped, weight_on kept)."""
    idx = torch.tensor(list(experts), dtype=torch.int64, device=weights.device)
    if idx.numel() == 0:
        raise MoEInputError("experts: expected at least one expert id")
    if int(idx.min()) < 0 or int(idx.max()) >= weights.spec.num_experts:
        raise MoEInputError(f"experts: ids must be in [0, {weights.spec.num_experts}), got {list(experts)}")
    return weights.experts_subset(idx, top_k=top_k)


def _plain_router(weights: MoEWeights) -> MoEWeights:
    """The same experts with the plain (output-weighted) router: EP applies input weights at dispatch."""
    return MoEWeights(weights.spec.replace(router=RouterSpec()), **weights.tensors())


@dataclass(frozen=True)
class RankLayer:
    """What one rank holds of a layer.

    routed:         its routed experts in local id order (`Placement.rank_experts[rank]`), a k=1 layer with
                    the plain router: output-weighted even for an input-weighted layer (see input_weighted).
    shared:         the S shared experts as a k=1 layer of their own (I = the shared intermediate size, no
                    biases, plain router), held by every rank; None without shared experts.
    shared_gate:    [S, H] the shared experts' sigmoid gate (Qwen2-MoE), None when ungated.
    input_weighted: Llama-4's router.weight_on == "input": the sender scales each pair's x row by its
                    router weight (in x's dtype, as the published model does) and sends weight 1.
    """

    routed: MoEWeights
    shared: MoEWeights | None = None
    shared_gate: torch.Tensor | None = None
    input_weighted: bool = False


def _shared_spec(spec: MoESpec) -> MoESpec:
    """The shared experts of `spec` as a k=1 layer of their own (see RankLayer.shared)."""
    return spec.replace(
        num_experts=spec.shared.count,
        top_k=1,
        intermediate=spec.shared.intermediate,
        router=RouterSpec(),
        expert=dataclasses.replace(spec.expert, bias=False),
        shared=SharedSpec(),
    )


def local_unsupported(info: ImplInfo, spec: MoESpec) -> str | None:
    """Why the registry implementation `info` cannot be a rank's local compute for the layer `spec` (None
    when it can): it runs the routed experts as a k=1 layer with the plain router, and the shared experts
    as a layer of their own, both with a given routing."""
    if not info.takes_routing or info.drops_tokens:
        return f"{info.name} {'drops tokens' if info.drops_tokens else 'computes its own routing'}"
    routed = spec.replace(top_k=1, router=RouterSpec(), shared=SharedSpec())
    parts = [routed] + ([_shared_spec(spec)] if spec.shared.count else [])
    return next((why for part in parts if (why := info.spec_unsupported(part, routing_given=True))), None)


def rank_layer(weights: MoEWeights, placement: Placement, rank: int) -> RankLayer:
    """Rank `rank`'s part of the whole layer `weights` under `placement`."""
    if not 0 <= rank < placement.num_ranks:
        raise MoEInputError(f"rank: expected in [0, {placement.num_ranks}), got {rank}")
    if placement.num_experts != weights.spec.num_experts:
        raise MoEInputError(
            f"placement: made for {placement.num_experts} experts, the layer has {weights.spec.num_experts}"
        )
    spec = weights.spec
    routed = _plain_router(slice_experts(weights, placement.rank_experts[rank]))
    shared = None
    if spec.shared.count:
        router = weights.shared_w1.new_zeros(spec.shared.count, spec.hidden)  # never read: the routing is given
        shared = MoEWeights(_shared_spec(spec), router=router, w1=weights.shared_w1, w2=weights.shared_w2)
    return RankLayer(routed, shared, weights.shared_gate, spec.router.weight_on == "input")


def shared_output(x: torch.Tensor, layer: RankLayer, local_compute: LocalCompute) -> torch.Tensor | None:
    """[T, H] fp32: the shared experts on this rank's tokens x [T, H] through `local_compute` (pair s*T + t
    is token t on shared expert s, weight sigmoid(x . gate[s]) in fp32, or 1), summed over s in order;
    None without shared experts."""
    if layer.shared is None:
        return None
    s, (num_tokens, hidden) = layer.shared.spec.num_experts, x.shape
    ids = torch.arange(s, device=x.device).repeat_interleave(num_tokens)
    if layer.shared_gate is None:
        pair_weights = torch.ones(s * num_tokens, dtype=torch.float32, device=x.device)
    else:
        pair_weights = torch.sigmoid(x.float() @ layer.shared_gate.to(x.device).float().t()).t().reshape(-1)
    y = local_compute(x.repeat(s, 1), ids, pair_weights.contiguous(), layer.shared).view(s, num_tokens, hidden)
    acc = y[0].float()
    for i in range(1, s):  # expert order, fp32: the same sum on every run
        acc += y[i]
    return acc


def routed_reference(
    x: torch.Tensor, weights: MoEWeights, topk_weights: torch.Tensor, topk_ids: torch.Tensor
) -> torch.Tensor:
    """The routed experts in fp64 for a given routing (topk_weights [T, k], topk_ids [T, k]) instead of the
    router's: sum over slots of weight x expert FFN (shared experts not included). -> [T, H] fp64."""
    all_experts = torch.arange(weights.spec.num_experts, device=weights.device)
    routed = weights.experts_subset(all_experts, top_k=topk_ids.shape[1])
    return reference_from_routing(x, routed, Routing(topk_weights, topk_ids))


def reference_local_compute(
    x_pairs: torch.Tensor, local_ids: torch.Tensor, pair_weights: torch.Tensor, local_weights: MoEWeights
) -> torch.Tensor:
    """LocalCompute by the fp64 reference math, rounded once to x's dtype (for tests)."""
    return routed_reference(x_pairs, local_weights, pair_weights[:, None], local_ids[:, None]).to(x_pairs.dtype)


def registry_local_compute(name: str, config: dict | None = None, *, check: bool = True) -> LocalCompute:
    """LocalCompute by the registry implementation `name` (with its tuning `config`), unchanged: it gets the
    precomputed k=1 routing (the registry's `routing=`: its router is skipped). It runs where the local
    weights are; pairs on another device (gloo's CPU tensors, weights on a GPU) travel there and back.
    check=False skips the registry's input checks (host syncs), for timed runs after a checked one."""
    import moebench

    impl = moebench.get(name)

    def compute(x_pairs, local_ids, pair_weights, local_weights):
        device = local_weights.device
        routing = Routing(weights=pair_weights[:, None].to(device), ids=local_ids[:, None].to(device))
        y = impl(x_pairs.to(device), local_weights, config=config, routing=routing, check=check)
        return y.to(x_pairs.device)

    return compute
