"""The expert computation on one rank: its slice of the weights and the callables that run its pairs.

A rank receives P (token, slot) pairs: x rows [P, H], the local id of each pair's expert [P] and the
pair's router weight [P] fp32. It runs them as a k=1 problem over its E_local experts and returns
y [P, H] (router weight applied) in x's dtype. Any function with that signature can be the local
compute (`LocalCompute`); two are given: the fp64 reference math, and an adapter to a registry
implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from moebench.errors import MoEInputError
from moebench.reference import reference_from_routing
from moebench.routing import Routing
from moebench.weights import MoEWeights

# (x_pairs [P, H], local_ids [P] int64, pair_weights [P] fp32, local_weights) -> y [P, H] in x's dtype
LocalCompute = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, MoEWeights], torch.Tensor]


def slice_experts(weights: MoEWeights, experts: Sequence[int], *, top_k: int = 1) -> MoEWeights:
    """The layer restricted to `experts` (global ids, in the order given; an id may repeat for a
    replica): expert i of the result is global expert experts[i]. The router rows come along (a k=1
    local problem with precomputed routing does not read them); the spec has len(experts) experts
    (MoEWeights.experts_subset: group limits and shared experts dropped)."""
    idx = torch.tensor(list(experts), dtype=torch.int64, device=weights.device)
    if idx.numel() == 0:
        raise MoEInputError("experts: expected at least one expert id")
    if int(idx.min()) < 0 or int(idx.max()) >= weights.spec.num_experts:
        raise MoEInputError(f"experts: ids must be in [0, {weights.spec.num_experts}), got {list(experts)}")
    return weights.experts_subset(idx, top_k=top_k)


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


def registry_local_compute(name: str) -> LocalCompute:
    """LocalCompute by the registry implementation `name`, given the precomputed k=1 routing (the
    registry's `routing=`: the implementation's router is skipped)."""
    import moebench

    impl = moebench.get(name)

    def compute(x_pairs, local_ids, pair_weights, local_weights):
        routing = Routing(weights=pair_weights[:, None], ids=local_ids[:, None])
        return impl(x_pairs, local_weights, routing=routing)

    return compute
