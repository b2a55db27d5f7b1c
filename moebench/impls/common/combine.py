"""Launcher of the deterministic combine over the k slots (moebench.kernels.common.combine), shared by
triton_grouped and block_sparse."""

from __future__ import annotations

import torch

from moebench.kernels.common import combine as combine_kernels
from moebench.kernels.common.interpreter import store_flags
from moebench.kernels.common.pow2 import next_pow2

COMBINE_TILE_ELEMENTS = 4096  # elements per combine program (BLOCK_T * BLOCK_N)


def combine(pair_rows: torch.Tensor, topk_weights: torch.Tensor | None, out: torch.Tensor, top_k: int) -> torch.Tensor:
    """out[t] = sum_s (w[t, s] *) pair_rows[t*k + s] in a fixed order; writes every element of out.
    A no-op when pair_rows is out (k == 1 and the producer wrote out itself)."""
    num_tokens, n = out.shape
    if num_tokens == 0 or pair_rows is out:
        return out
    block_n = min(next_pow2(n), COMBINE_TILE_ELEMENTS)
    block_t = max(1, min(COMBINE_TILE_ELEMENTS // block_n, next_pow2(num_tokens)))
    grid = (-(-num_tokens // block_t), -(-n // block_n))
    combine_kernels.combine_kernel[grid](
        pair_rows, topk_weights if topk_weights is not None else pair_rows, out,
        num_tokens, n, pair_rows.stride(0), out.stride(0),
        TOP_K=top_k, APPLY_WEIGHT=topk_weights is not None, BLOCK_T=block_t, BLOCK_N=block_n,
        **store_flags(out.dtype),
    )  # fmt: skip
    return out
