"""DSD kernel (block-sparse x dense -> dense rows per pair) and the combine over top-k.

`dsd_kernel`: for each padded row r of row block rb (BSR: blocks row_offsets[rb] ..
row_offsets[rb+1]), out[pair(r), n] = sum over the row's blocks b (column block e*NB_I + j) and
slices g of  S_g[b][r, :] @ W[e, g*I + j*BLOCK + (0..BLOCK), n].
  forward:  S = activation blocks (1 slice), W[e, i, n] = w2[e, n, i]  -> y per pair (before combine),
            + b2[e] (HAS_BIAS), then times the router weight (APPLY_WEIGHT, inference)
  backward: S = d(pre-activation) blocks (gate, up), W[e, i, n] = w1[e, i, n] -> dx per pair
Experts >= num_experts are appended shared-expert chunks, read from shared_w_ptr (HAS_SHARED; see
moebench.kernels.common.epilogue).
Rows go to their pair's row of `out` ([T*k, N]; fp32 for training, where the router gradient
reads them, the spec dtype for inference, half the traffic): padding rows are not stored, every
pair's row is written exactly once, so no atomics and the result is deterministic.
The combine over the k slots is moebench.kernels.common.combine.combine_kernel.
"""

import triton
import triton.language as tl

from moebench.kernels.block_sparse.blocks import dense_columns, row_pairs
from moebench.kernels.common.epilogue import expert_base, expert_output
from moebench.kernels.common.matmul import mma
from moebench.kernels.common.rounding import cast_for_store


@triton.jit
def dsd_kernel(
    s_ptr,  # [NUM_SLICES, max_blocks, BLOCK, BLOCK] spec dtype: sparse operand blocks, slices s_slice_stride apart
    w_ptr,  # per-expert dense operand, spec dtype: (i, n) of slice g at e*stride_we + (g*I+i)*stride_wi + n*stride_wn
    row_to_pair_ptr,  # [max_rows] int32: pair id of each padded row, -1 = padding
    row_offsets_ptr,  # [max_row_blocks + 1] int32: BSR row pointer (first block of each row block)
    block_col_ptr,  # [max_blocks] int32: column block (expert * NB_I + j) of each block
    topk_weight_ptr,  # [T * k] fp32: router weight per pair (read if APPLY_WEIGHT)
    out_ptr,  # [T * k, N] fp32 or spec dtype (out): one row per pair, row stride stride_out, unit column stride
    bias_ptr,  # [E, N] spec dtype: per-expert bias of the output rows, row stride stride_be (HAS_BIAS)
    shared_w_ptr,  # [S', ...] spec dtype: shared-expert chunks of the dense operand, w_ptr's inner strides
    N,
    inter,
    NB_I,
    num_experts,
    s_slice_stride,
    stride_we,
    stride_wi,
    stride_wn,
    stride_out,
    stride_be,
    stride_se,
    NUM_SLICES: tl.constexpr,
    APPLY_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    pid_m = tl.program_id(0)
    row_block = pid_m // SUB_M
    start = tl.load(row_offsets_ptr + row_block).to(tl.int64)  # int64 bounds: block offsets below are int64
    end = tl.load(row_offsets_ptr + row_block + 1).to(tl.int64)
    if start >= end:  # a row block past the last used one (host-side grid bound); helpers cannot return
        return
    offs_m = (pid_m % SUB_M) * BLOCK_M + tl.arange(0, BLOCK_M)  # rows within the block
    row_ok, safe_pair = row_pairs(row_to_pair_ptr, row_block.to(tl.int64), offs_m, BLOCK)
    offs_n, n_ok = dense_columns(N, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    for b in range(start, end):
        col_block = tl.load(block_col_ptr + b)
        expert = (col_block // NB_I).to(tl.int64)
        i0 = (col_block % NB_I) * BLOCK
        s_block = s_ptr + b * (BLOCK * BLOCK) + offs_m[:, None] * BLOCK
        w_base = expert_base(w_ptr, shared_w_ptr, expert, num_experts, stride_we, stride_se, HAS_SHARED)
        w_expert = w_base + offs_n[None, :].to(tl.int64) * stride_wn
        for g in tl.static_range(NUM_SLICES):
            for k0 in range(0, BLOCK, BLOCK_K):
                a = tl.load(s_block + g * s_slice_stride + (k0 + offs_k)[None, :])  # inside block b
                i = i0 + k0 + offs_k
                w = tl.load(
                    w_expert + (g * inter + i)[:, None].to(tl.int64) * stride_wi,
                    mask=(i < inter)[:, None] & n_ok[None, :],
                    other=0.0,
                )
                acc = mma(a, w, acc, UPCAST_BF16, FP32_IEEE)
    if HAS_BIAS:  # one expert per row block: that of its first block
        row_expert = (tl.load(block_col_ptr + start) // NB_I).to(tl.int64)
    else:
        row_expert = start  # unread
    acc = expert_output(
        acc, topk_weight_ptr, safe_pair, row_ok, bias_ptr, row_expert, offs_n, n_ok, num_experts, stride_be,
        APPLY_WEIGHT, HAS_BIAS, HAS_SHARED,
    )  # fmt: skip
    out_ptrs = out_ptr + safe_pair[:, None] * stride_out + offs_n[None, :]
    tl.store(out_ptrs, cast_for_store(acc, out_ptr, ROUND_BF16), mask=row_ok[:, None] & n_ok[None, :])
