"""The single source of truth: the MoE layer in float64.

Tests, `moebench verify`, benchmarks' parity column and export parity all compare against
`reference_moe`. It is differentiable, so backward parity uses its autograd too.
"""

from __future__ import annotations

import torch

from moebench.activations import apply_activation
from moebench.routing import route, router_logits, router_scores, weights_at
from moebench.weights import MoEWeights


def reference_moe(
    x: torch.Tensor, weights: MoEWeights, keep: torch.Tensor | None = None, row_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """x: [T, H] any float dtype -> [T, H] float64.

    Expert selection comes from the fp32 router logits every implementation uses
    (moebench.routing.route); the routing weights, FFN and combine are fp64. Selecting on fp64
    logits instead would pick the other expert wherever two scores differ by less than fp32
    rounding, and fail every implementation there; such near ties are accepted either way by the
    parity gate (moebench.parity.ties).

    keep: optional [T, k] bool; pairs (token, slot) marked False contribute nothing. Only for
    checking implementations that document token dropping against the pairs they dropped.
    row_scale: optional [T] fp64 zeros, filled as in reference_from_routing.
    """
    spec = weights.spec
    with torch.no_grad():
        topk_ids = route(x, weights.router, spec)[1]
    logits = router_logits(x, weights.router, compute_dtype=torch.float64)
    topk_weights = weights_at(router_scores(logits, spec), topk_ids, spec)
    if keep is not None:
        topk_weights = topk_weights * keep.to(device=x.device, dtype=torch.float64)
    return reference_from_routing(x, weights, topk_weights, topk_ids, row_scale)


def reference_from_routing(
    x: torch.Tensor,
    weights: MoEWeights,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    row_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """The layer in fp64 for a given routing: x [T, H], topk_weights [T, k], topk_ids [T, k] -> [T, H].

    row_scale: optional [T] fp64 zeros; receives each token's sum over its experts of
    |routing weight| * ||expert output row||, the size of the terms its output row sums (rounding
    errors are relative to it, not to the sum, which may cancel; the parity gate's row check)."""
    spec = weights.spec
    x64 = x.to(torch.float64)
    topk_weights = topk_weights.to(torch.float64)
    # expert weights are upcast one expert at a time: all of them in fp64 would not fit a GPU for
    # the large presets (deepseek-v3: 90 GB)
    w1, w2 = weights.w1, weights.w2
    out = torch.zeros_like(x64)
    for expert in range(spec.num_experts):
        token_idx, slot = torch.where(topk_ids == expert)
        if token_idx.numel() == 0:
            continue
        h = apply_activation(spec, x64[token_idx] @ w1[expert].to(torch.float64).t())
        y = h @ w2[expert].to(torch.float64).t()
        weighted = y * topk_weights[token_idx, slot, None]
        out = out.index_add(0, token_idx, weighted)
        if row_scale is not None:
            row_scale.index_add_(0, token_idx, torch.linalg.vector_norm(weighted.detach(), dim=1))
    return out
