"""Grouped GEMMs of the MoE FFN over expert-sorted, BLOCK_M-padded pairs (see common/align.py).

`grouped_gate_up_kernel`: h[row] = act(x[token(row)] @ w1[e].T) for the pairs of expert e, the
activation fused in the epilogue (swiglu reads the gate and the up tile of w1 and writes only
silu(gate) * up, I wide), with the expert options in the same epilogue (router weight on the input,
b1, clamped SwiGLU: moebench.kernels.common.epilogue, common.activation). Rows of h are the sorted
positions, so the second GEMM reads them contiguously; padding rows are never written (and never read unmasked).

`grouped_down_kernel`: y[pair] = topk_weight[pair] * (h[row] @ w2[e].T + b2[e]), the bias and the router
weight (unless it scales the input) applied in fp32 before rounding; rows of y are pair ids ([T*k, H], or
`out` [T, H] itself when k == 1). Experts >= num_experts are appended shared-expert chunks (HAS_SHARED),
with k and E counting them.

Both use a 1-D grid sized from the host-known upper bound of M blocks; programs past the
device-side block count (num_blocks_ptr) exit at once. 64-bit offsets wherever a product of an
index and a stride can pass 2**31 (expert * stride_e, token * stride, row * stride).
"""

import triton
import triton.language as tl

from moebench.kernels.common.rounding import cast_for_store
from moebench.kernels.triton_grouped.tiles import down_tile, expert_weight_ptrs, gate_up_tile, swizzle_pid


@triton.jit
def grouped_gate_up_kernel(
    x_ptr,  # [T, H] compute dtype, strides (stride_xt, stride_xh)
    w1_ptr,  # [E, G*I, H] compute dtype, strides (stride_we, stride_wn, stride_wk); gate rows then up rows
    h_ptr,  # [max_blocks * BLOCK_M, I] compute dtype out, rows = sorted positions, unit column stride
    sorted_pairs_ptr,  # [max_blocks * BLOCK_M] int32: pair id per sorted position, >= num_pairs = padding
    block_expert_ptr,  # [max_blocks] int32: expert of each M block
    num_blocks_ptr,  # [1] int32: M blocks that hold pairs (device side)
    in_w_ptr,  # [P] fp32: router weight of each pair on the expert's input (SCALE_INPUT)
    b1_ptr,  # [E, G*I] compute dtype, row stride stride_b1e, unit column stride (HAS_BIAS)
    shared_w1_ptr,  # [S', G*I, H] compute dtype: shared-expert chunks, w1's inner strides (HAS_SHARED)
    num_pairs,
    top_k,
    hidden,
    inter,
    max_blocks,
    num_experts,
    stride_xt,
    stride_xh,
    stride_we,
    stride_wn,
    stride_wk,
    stride_ht,
    stride_b1e,
    stride_se,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr,
    SWIGLU_LIMIT: tl.constexpr,
    SWIGLU_UP_OFFSET: tl.constexpr,
    SCALE_INPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    pid_m, pid_n = swizzle_pid(tl.program_id(0), max_blocks, tl.cdiv(inter, BLOCK_N), GROUP_M)
    if pid_m >= tl.load(num_blocks_ptr):
        return
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pairs = tl.load(sorted_pairs_ptr + rows)
    row_ok = pairs < num_pairs
    tokens = (pairs // top_k).to(tl.int64)
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)

    offs_n, offs_k, w_ptrs = expert_weight_ptrs(
        w1_ptr, shared_w1_ptr, expert, pid_n, inter, num_experts, stride_we, stride_se, stride_wn, stride_wk,
        HAS_SHARED, BLOCK_N, BLOCK_K,
    )  # fmt: skip
    a_ptrs = x_ptr + tokens[:, None] * stride_xt + offs_k[None, :] * stride_xh
    h = gate_up_tile(
        a_ptrs, w_ptrs, row_ok, pairs, in_w_ptr, b1_ptr, expert, offs_n,
        inter * stride_wn, hidden, inter, num_experts, stride_b1e, BLOCK_K * stride_xh, BLOCK_K * stride_wk,
        ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET, SCALE_INPUT, HAS_BIAS, HAS_SHARED,
        BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, UPCAST_BF16, FP32_IEEE,
    )  # fmt: skip
    h_ptrs = h_ptr + rows.to(tl.int64)[:, None] * stride_ht + offs_n[None, :]
    tl.store(h_ptrs, cast_for_store(h, h_ptr, ROUND_BF16), mask=row_ok[:, None] & (offs_n < inter)[None, :])


@triton.jit
def grouped_down_kernel(
    h_ptr,  # [max_blocks * ALIGN_M, I] compute dtype, rows = sorted positions, unit column stride
    w2_ptr,  # [E, H, I] compute dtype, strides (stride_we, stride_wn, stride_wk)
    y_ptr,  # [P, H] compute dtype out, row = pair id (or out [T, H] when k == 1), unit column stride
    out_w_ptr,  # [P] fp32: router weight of each pair on the expert's output (SCALE_OUTPUT)
    sorted_pairs_ptr,  # [max_blocks * ALIGN_M] int32
    block_expert_ptr,  # [max_blocks] int32 (blocks of ALIGN_M rows)
    num_blocks_ptr,  # [1] int32 (blocks of ALIGN_M rows)
    b2_ptr,  # [E, H] compute dtype, row stride stride_b2e, unit column stride (HAS_BIAS)
    shared_w2_ptr,  # [S', H, I] compute dtype: shared-expert chunks, w2's inner strides (HAS_SHARED)
    num_pairs,
    hidden,
    inter,
    max_blocks_m,  # upper bound of this kernel's M blocks (of BLOCK_M rows)
    num_experts,
    stride_ht,
    stride_we,
    stride_wn,
    stride_wk,
    stride_yt,
    stride_b2e,
    stride_se,
    SCALE_OUTPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK_M: tl.constexpr,  # divides ALIGN_M
    ALIGN_M: tl.constexpr,  # the BLOCK_M the pairs were padded to
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    SPLIT: tl.constexpr = ALIGN_M // BLOCK_M
    pid_m, pid_n = swizzle_pid(tl.program_id(0), max_blocks_m, tl.cdiv(hidden, BLOCK_N), GROUP_M)
    if pid_m >= tl.load(num_blocks_ptr) * SPLIT:
        return
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pairs = tl.load(sorted_pairs_ptr + rows)
    row_ok = pairs < num_pairs
    expert = tl.load(block_expert_ptr + pid_m // SPLIT).to(tl.int64)

    offs_n, offs_k, w_ptrs = expert_weight_ptrs(
        w2_ptr, shared_w2_ptr, expert, pid_n, hidden, num_experts, stride_we, stride_se, stride_wn, stride_wk,
        HAS_SHARED, BLOCK_N, BLOCK_K,
    )  # fmt: skip
    a_ptrs = h_ptr + rows.to(tl.int64)[:, None] * stride_ht + offs_k[None, :]
    y = down_tile(
        a_ptrs, w_ptrs, row_ok, pairs, out_w_ptr, b2_ptr, expert, offs_n,
        hidden, inter, num_experts, stride_b2e, BLOCK_K * stride_wk,
        SCALE_OUTPUT, HAS_BIAS, HAS_SHARED, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, UPCAST_BF16, FP32_IEEE,
    )  # fmt: skip
    y_ptrs = y_ptr + pairs.to(tl.int64)[:, None] * stride_yt + offs_n[None, :]
    tl.store(y_ptrs, cast_for_store(y, y_ptr, ROUND_BF16), mask=row_ok[:, None] & (offs_n < hidden)[None, :])
