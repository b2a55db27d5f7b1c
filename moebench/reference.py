"""The single source of truth: the MoE layer in float64.

Tests, `moebench verify`, benchmarks' parity column and export parity all compare against
`reference_moe`. It is differentiable, so backward parity uses its autograd too.
"""

from __future__ import annotations

import torch

from moebench.activations import apply_activation
from moebench.routing import route
from moebench.weights import MoEWeights


def reference_moe(x: torch.Tensor, weights: MoEWeights, keep: torch.Tensor | None = None) -> torch.Tensor:
    """x: [T, H] any float dtype -> [T, H] float64. Routing, FFN and combine all in fp64.

    keep: optional [T, k] bool; pairs (token, slot) marked False contribute nothing. Only for
    checking implementations that document token dropping against the pairs they dropped.
    """
    spec = weights.spec
    x64 = x.to(torch.float64)
    router = weights.router.to(torch.float64)
    # expert weights are upcast one expert at a time: all of them in fp64 would not fit a GPU for
    # the large presets (deepseek-v3: 90 GB)
    w1, w2 = weights.w1, weights.w2
    topk_weights, topk_ids = route(x64, router, spec, compute_dtype=torch.float64)
    if keep is not None:
        topk_weights = topk_weights * keep.to(device=x.device, dtype=torch.float64)
    out = torch.zeros_like(x64)
    for expert in range(spec.num_experts):
        token_idx, slot = torch.where(topk_ids == expert)
        if token_idx.numel() == 0:
            continue
        h = apply_activation(spec, x64[token_idx] @ w1[expert].to(torch.float64).t())
        y = h @ w2[expert].to(torch.float64).t()
        out = out.index_add(0, token_idx, y * topk_weights[token_idx, slot, None])
    return out
