"""Router: logits -> scores -> top-k -> (optionally) renormalised weights. Shared by every
implementation and by the fp64 reference, so all of them pick experts the same way."""

from __future__ import annotations

import torch

from moebench.spec import MoESpec

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


def router_logits(x: torch.Tensor, router: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[T, H] x [E, H] -> [T, E] logits in compute_dtype.

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
        return torch.mm(x, router.t(), out_dtype=torch.float32)
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
    weights, ids = torch.topk(router_scores(logits, spec), spec.top_k, dim=-1, sorted=True)
    return _renormalized(weights, spec), ids


def router_scores(logits: torch.Tensor, spec: MoESpec) -> torch.Tensor:
    """[T, E] logits -> [T, E] scores, the values top-k selects on (and the weights come from)."""
    if spec.router.scoring == "softmax":
        return torch.softmax(logits, dim=-1)
    return torch.sigmoid(logits)


def weights_at(scores: torch.Tensor, ids: torch.Tensor, spec: MoESpec) -> torch.Tensor:
    """The k routing weights [T, k] of a given choice of experts `ids` [T, k] (not necessarily the
    top-k of `scores`: the fp64 reference weighs the fp32 router's choice, or the other side of a
    near tie, with fp64 scores)."""
    return _renormalized(scores.gather(-1, ids), spec)


def _renormalized(weights: torch.Tensor, spec: MoESpec) -> torch.Tensor:
    if spec.router.renormalize:
        return weights / weights.sum(dim=-1, keepdim=True)
    return weights


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
