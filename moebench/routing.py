"""Router: logits -> scores -> choice -> top-k -> weights. Shared by every implementation and by the fp64
reference, so all of them pick experts the same way.

    route(x, weights, compute_dtype=fp32) -> Routing(weights [T, k], ids [T, k] int64)
    router_logits(x, router, compute_dtype, bias=None) -> [T, E]     (the fp32-logits mm trick lives here)
    route_from_logits(logits, spec, selection_bias=None) -> Routing  (the options of spec.router), built from
      router_scores (unbiased scores), selection_scores (what top-k picks on) and weights_at (a choice's weights)
    route_unless_given(x, weights, routing) -> Routing               (an implementation's routing= argument)
    sort_by_expert(ids, E) -> (order, counts, offsets)               (grouping pairs by expert, no host sync)
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from moebench.spec import MoESpec
from moebench.weights import MoEWeights

_MIXED_MM: dict[tuple[str, torch.dtype], bool] = {}  # (device type, dtype) -> mm(out_dtype=fp32) works


def _mixed_mm_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch.mm(a, b, out_dtype=torch.float32) runs for 16-bit a, b on this device type
    (CUDA in recent torch; not the CPU). Probed once per process without reading the result back
    (no host sync: the first call may come inside a sync-checked or graph-captured region)."""
    key = (device.type, dtype)
    if key not in _MIXED_MM:
        try:
            a = torch.ones(2, 16, dtype=dtype, device=device)
            _MIXED_MM[key] = torch.mm(a, a.t(), out_dtype=torch.float32).dtype == torch.float32
        except (RuntimeError, NotImplementedError, TypeError):
            _MIXED_MM[key] = False
    return _MIXED_MM[key]


def router_logits(
    x: torch.Tensor,
    router: torch.Tensor,
    compute_dtype: torch.dtype = torch.float32,
    *,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """[T, H] x [E, H] (+ bias [E]) -> [T, E] logits in compute_dtype (the bias added in compute_dtype).

    fp32 logits of 16-bit inputs come from one mm with fp32 output where the device has it (the
    products of 16-bit values are exact in fp32 and the sums accumulate in fp32, as when upcasting
    first, so only the summation order differs) - no fp32 copy of x, and tensor cores instead of FMA
    units: ~1.3 ms less at deepseek-v3, T = 16384 (estimate). Otherwise, and when a gradient must flow
    (that overload's backward is not relied on), both inputs are upcast first.
    """
    mixed = (
        compute_dtype == torch.float32
        and x.dim() == 2
        and x.dtype in (torch.float16, torch.bfloat16)
        and router.dtype == x.dtype
        and not (torch.is_grad_enabled() and (x.requires_grad or router.requires_grad))
        and x.device.type != "cpu"
        and _mixed_mm_works(x.device, x.dtype)
    )
    if mixed:
        logits = torch.mm(x, router.t(), out_dtype=torch.float32)
    else:
        logits = x.to(compute_dtype) @ router.to(compute_dtype).t()
    return logits if bias is None else logits + bias.to(compute_dtype)


class Routing(NamedTuple):
    """Each token's k chosen experts and their weights: weights [T, k] fp32 (fp64 in the reference),
    ids [T, k] int64 in [0, E). Unpacks as `topk_weights, topk_ids = routing`."""

    weights: torch.Tensor
    ids: torch.Tensor


def route(x: torch.Tensor, weights: MoEWeights, *, compute_dtype: torch.dtype = torch.float32) -> Routing:
    """The one routing path: x [T, H] -> Routing, for every option of weights.spec.router.

    Logits in compute_dtype (router_logits), then route_from_logits. Graph-safe: no host sync, no
    data-dependent shape (T = 0 included), so it runs on meta tensors and inside a CUDA graph.
    """
    logits = router_logits(x, weights.router, compute_dtype, bias=weights.router_bias)
    return route_from_logits(logits, weights.spec, weights.selection_bias)


def route_unless_given(x: torch.Tensor, weights: MoEWeights, routing: Routing | None) -> Routing:
    """The implementations' first line: the precomputed `routing` when given (registry-checked), else route(x)."""
    return route(x, weights) if routing is None else routing


def route_from_logits(logits: torch.Tensor, spec: MoESpec, selection_bias: torch.Tensor | None = None) -> Routing:
    """[T, E] router logits (router bias included) -> Routing, computed in the logits' dtype.

    choice scores = the logits (softmax_after_topk), else softmax / sigmoid of them, plus the
    selection bias; with group-limited routing, experts outside the best groups are masked to -inf;
    ids = top-k of the choice scores (sorted, best first); weights = the UNBIASED scores at those ids
    (softmax over the k chosen logits under softmax_after_topk), renormalised if asked, times scaling.
    """
    scores = router_scores(logits, spec)
    ids = torch.topk(selection_scores(scores, spec, selection_bias), spec.top_k, dim=-1, sorted=True).indices
    return Routing(weights_at(scores, ids, spec), ids)


def router_scores(logits: torch.Tensor, spec: MoESpec) -> torch.Tensor:
    """[T, E] logits -> [T, E] unbiased scores: the logits themselves under softmax_after_topk, else
    their softmax or sigmoid. The routing weights are taken from these (weights_at)."""
    r = spec.router
    if r.softmax_after_topk:
        return logits
    return torch.softmax(logits, dim=-1) if r.scoring == "softmax" else torch.sigmoid(logits)


def selection_scores(scores: torch.Tensor, spec: MoESpec, selection_bias: torch.Tensor | None = None) -> torch.Tensor:
    """[T, E] unbiased scores -> [T, E] the values top-k selects on: plus the selection bias, and -inf
    outside each token's best groups under group-limited routing."""
    choice = scores if selection_bias is None else scores + selection_bias.to(scores.dtype)
    if spec.router.group_limited:
        choice = _mask_to_best_groups(choice, spec.router.groups, spec.router.topk_groups)
    return choice


def weights_at(scores: torch.Tensor, ids: torch.Tensor, spec: MoESpec) -> torch.Tensor:
    """The k routing weights [T, k] of a given choice of experts `ids` [T, k] from unbiased `scores`
    [T, E] (router_scores): softmax over the k under softmax_after_topk, else renormalised if asked;
    times the routed scaling. The choice need not be the top-k of `scores`: the fp64 reference weighs
    the fp32 router's choice (or the other side of a near tie) with fp64 scores."""
    r = spec.router
    weights = scores.gather(-1, ids)
    if r.softmax_after_topk:
        weights = torch.softmax(weights, dim=-1)
    elif r.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    if r.scaling != 1.0:
        weights = weights * r.scaling
    return weights


def _mask_to_best_groups(choice: torch.Tensor, groups: int, topk_groups: int) -> torch.Tensor:
    """choice [T, E] with the experts outside each token's best `topk_groups` of `groups` equal groups set
    to -inf; a group's score is the sum of its two best choice scores (DeepSeek-V3's definition)."""
    num_tokens, num_experts = choice.shape
    per_group = num_experts // groups
    group_scores = choice.view(num_tokens, groups, per_group).topk(2, dim=-1).values.sum(dim=-1)  # [T, G]
    best = group_scores.topk(topk_groups, dim=-1).indices  # [T, topk_groups]
    keep = torch.zeros(num_tokens, groups, dtype=torch.bool, device=choice.device).scatter_(1, best, True)
    keep = keep.unsqueeze(-1).expand(num_tokens, groups, per_group).reshape(num_tokens, num_experts)
    return choice.masked_fill(~keep, float("-inf"))


def sort_by_expert(topk_ids: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group the T*k (token, slot) pairs by expert, without a host sync.

    Returns (order [T*k] int64: flat pair index in expert-sorted order, stable;
             counts [E] int64: pairs per expert; offsets [E+1] int64: exclusive prefix sum).
    Pair p is token p // k, slot p % k.
    """
    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    # scatter_add, not bincount: bincount reads the ids' range on the host (a sync on CUDA)
    counts = torch.zeros(num_experts, dtype=torch.int64, device=flat.device).scatter_add_(
        0, flat, torch.ones_like(flat)
    )
    offsets = torch.zeros(num_experts + 1, dtype=torch.int64, device=flat.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return order, counts, offsets
