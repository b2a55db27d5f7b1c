"""Router: logits -> scores -> top-k -> (optionally) renormalised weights. Shared by every
implementation and by the fp64 reference, so all of them pick experts the same way."""

from __future__ import annotations

import torch

from moebench.spec import MoESpec


def router_logits(x: torch.Tensor, router: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[T, H] x [E, H] -> [T, E] logits in compute_dtype (inputs upcast first)."""
    return x.to(compute_dtype) @ router.to(compute_dtype).t()


def route(
    x: torch.Tensor,
    router: torch.Tensor,
    spec: MoESpec,
    compute_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (topk_weights [T, k] in compute_dtype, topk_ids [T, k] int64), ids sorted by score."""
    logits = router_logits(x, router, compute_dtype)
    return route_from_logits(logits, spec)


def route_from_logits(logits: torch.Tensor, spec: MoESpec) -> tuple[torch.Tensor, torch.Tensor]:
    if spec.router.scoring == "softmax":
        scores = torch.softmax(logits, dim=-1)
    else:
        scores = torch.sigmoid(logits)
    weights, ids = torch.topk(scores, spec.top_k, dim=-1, sorted=True)
    if spec.router.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids


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
