"""Deterministic combine: out[t] = sum over slots s = 0..k-1 of (w[t, s] *) y[t*k + s], in fp32, in
slot order. Shared by triton_grouped (router weight already applied by the down kernels) and
block_sparse (applied here for training, whose router gradient needs the unweighted rows).

Each program sums BLOCK_T tokens x BLOCK_N columns; every output element is written exactly once,
no atomics, so the result is bitwise repeatable.
"""

import triton
import triton.language as tl

from moebench.kernels.common.rounding import cast_for_store


@triton.jit
def combine_kernel(
    pair_rows_ptr,  # [T * TOP_K, N] fp32 or spec dtype: one row per (token, slot) pair, row stride stride_rows
    topk_weight_ptr,  # [T * TOP_K] fp32: router weight per pair (read if APPLY_WEIGHT)
    out_ptr,  # [T, N] output dtype (out), row stride stride_out, unit column stride
    T,
    N,
    stride_rows,
    stride_out,
    TOP_K: tl.constexpr,
    APPLY_WEIGHT: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_ok = offs_t < T
    mask = t_ok[:, None] & (offs_n < N)[None, :]
    tokens = offs_t.to(tl.int64)
    acc = tl.full((BLOCK_T, BLOCK_N), 0.0, dtype=tl.float32)
    for slot in tl.static_range(TOP_K):  # fixed order: deterministic
        pair = tokens * TOP_K + slot
        rows = tl.load(pair_rows_ptr + pair[:, None] * stride_rows + offs_n[None, :], mask=mask, other=0.0)
        rows = rows.to(tl.float32)
        if APPLY_WEIGHT:
            rows = rows * tl.load(topk_weight_ptr + pair, mask=t_ok, other=0.0)[:, None]
        acc += rows
    tl.store(
        out_ptr + tokens[:, None] * stride_out + offs_n[None, :], cast_for_store(acc, out_ptr, ROUND_BF16), mask=mask
    )
