"""SDD kernels: dense x dense -> block-sparse, computed only on each expert's nonzero blocks.

The block-sparse matrix is the hidden activation [padded_rows, E * I_padded] of the MoE layer
(see moebench.impls.block_sparse.topology): row block rb holds BLOCK expert-sorted (token, slot) pairs of
one expert e, and its nonzero blocks are column blocks e * NB_I + j, j < NB_I. Block b's data is
`blocks[b]` = a row-major [BLOCK, BLOCK] tile. One program computes a [BLOCK_M, BLOCK_N]
sub-tile of one nonzero block; programs of unused blocks (past the host-side bound) exit at once.

* `sdd_forward_kernel`: pre = [w_in *] x_sorted[rows] @ W1[e, cols]^T [+ b1[e, cols]] (gate and up for
  swiglu), then the activation; writes the activation blocks and (for training) the pre-activation blocks.
* `sdd_backward_kernel`: dh = [w_out *] (dy[token] @ W2[e][:, cols]) on the same blocks, then the
  activation backward with the saved pre-activations; writes d(pre-activation) blocks.
The expert options (router weight on the input or the output, b1, clamped SwiGLU, appended shared-expert
chunks for experts >= num_experts) are constexpr switches of the epilogues: moebench.kernels.common.epilogue.

Padding rows (row_to_pair = -1) and padding columns (>= I) are written as exact zeros.
"""

import triton
import triton.language as tl

from moebench.kernels.block_sparse.blocks import sdd_block, sdd_tile
from moebench.kernels.common.activation import activation_backward, activation_forward
from moebench.kernels.common.epilogue import expert_base, pre_activation
from moebench.kernels.common.matmul import mma
from moebench.kernels.common.rounding import cast_for_store


@triton.jit
def sdd_forward_kernel(
    x_ptr,  # [T, H] spec dtype, row stride stride_xt, unit column stride
    w1_ptr,  # [E, G*I, H] spec dtype (gate rows [0, I), up rows [I, 2I) for swiglu)
    row_to_pair_ptr,  # [max_rows] int32: pair id (token * TOP_K + slot) of each padded row, -1 = padding
    block_row_ptr,  # [max_blocks] int32: row block of each nonzero block, -1 = unused
    block_col_ptr,  # [max_blocks] int32: column block (expert * NB_I + j) of each block, -1 = unused
    h_ptr,  # [max_blocks, BLOCK, BLOCK] spec dtype (out): activation blocks
    pre_gate_ptr,  # [max_blocks, BLOCK, BLOCK] spec dtype (out, if SAVE_PRE): gate pre-activation blocks
    pre_up_ptr,  # [max_blocks, BLOCK, BLOCK] spec dtype (out, if SAVE_PRE and GATED): up pre-activation blocks
    in_w_ptr,  # [T * TOP_K] fp32: router weight of each pair on the expert's input (SCALE_INPUT)
    b1_ptr,  # [E, G*I] spec dtype, row stride stride_b1e, unit column stride (HAS_BIAS)
    shared_w1_ptr,  # [S', G*I, H] spec dtype: shared-expert chunks, w1's inner strides (HAS_SHARED)
    H,
    inter,
    TOP_K,
    NB_I,
    num_experts,
    stride_xt,
    stride_we,
    stride_wr,
    stride_wh,
    up_offset,  # I * stride_wr: from a gate row of w1 to its up row (host-computed, may exceed int32)
    stride_b1e,
    stride_se,
    BLOCK: tl.constexpr,
    GATED: tl.constexpr,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr,
    SWIGLU_LIMIT: tl.constexpr,
    SWIGLU_UP_OFFSET: tl.constexpr,
    SCALE_INPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    SAVE_PRE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    pid, b, col_block = sdd_block(block_col_ptr, BLOCK, BLOCK_M, BLOCK_N)
    if col_block < 0:  # past the used blocks (host-side grid bound); here, not in sdd_block: helpers cannot return
        return
    expert, offs_m, offs_n, row_ok, safe_pair, token, cols, col_ok = sdd_tile(
        pid, b, col_block, block_row_ptr, row_to_pair_ptr, inter, TOP_K, NB_I, BLOCK, BLOCK_M, BLOCK_N
    )
    offs_k = tl.arange(0, BLOCK_K)

    x_ptrs = x_ptr + token[:, None] * stride_xt + offs_k[None, :]
    w_expert = expert_base(w1_ptr, shared_w1_ptr, expert, num_experts, stride_we, stride_se, HAS_SHARED)
    w_gate_ptrs = w_expert + cols[None, :].to(tl.int64) * stride_wr + offs_k[:, None] * stride_wh
    acc_gate = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    acc_up = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        k_ok = (k0 + offs_k) < H
        a = tl.load(x_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w_mask = k_ok[:, None] & col_ok[None, :]
        w_gate = tl.load(w_gate_ptrs, mask=w_mask, other=0.0)
        acc_gate = mma(a, w_gate, acc_gate, UPCAST_BF16, FP32_IEEE)
        if GATED:
            w_up = tl.load(w_gate_ptrs + up_offset, mask=w_mask, other=0.0)
            acc_up = mma(a, w_up, acc_up, UPCAST_BF16, FP32_IEEE)
        x_ptrs += BLOCK_K
        w_gate_ptrs += BLOCK_K * stride_wh

    acc_gate, acc_up = pre_activation(
        acc_gate, acc_up, in_w_ptr, safe_pair, row_ok, b1_ptr, expert, cols, col_ok, inter, num_experts, stride_b1e,
        GATED, SCALE_INPUT, HAS_BIAS, HAS_SHARED,
    )  # fmt: skip
    keep = row_ok[:, None] & col_ok[None, :]
    h = tl.where(
        keep, activation_forward(acc_gate, acc_up, ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET), 0.0
    )
    tile = b * (BLOCK * BLOCK) + offs_m[:, None] * BLOCK + offs_n[None, :]  # inside block b by construction
    tl.store(h_ptr + tile, cast_for_store(h, h_ptr, ROUND_BF16))
    if SAVE_PRE:
        tl.store(pre_gate_ptr + tile, cast_for_store(tl.where(keep, acc_gate, 0.0), pre_gate_ptr, ROUND_BF16))
        if GATED:
            tl.store(pre_up_ptr + tile, cast_for_store(tl.where(keep, acc_up, 0.0), pre_up_ptr, ROUND_BF16))


@triton.jit
def sdd_backward_kernel(
    dy_ptr,  # [T, H] spec dtype: gradient of the layer output, row stride stride_dyt, unit column stride
    out_w_ptr,  # [T * TOP_K] fp32: router weight of each pair on the expert's output (SCALE_OUTPUT)
    w2_ptr,  # [E, H, I] spec dtype
    shared_w2_ptr,  # [S', H, I] spec dtype: shared-expert chunks, w2's inner strides (HAS_SHARED)
    row_to_pair_ptr,  # [max_rows] int32: pair id of each padded row, -1 = padding
    block_row_ptr,  # [max_blocks] int32: row block of each nonzero block, -1 = unused
    block_col_ptr,  # [max_blocks] int32: column block of each block, -1 = unused
    pre_gate_ptr,  # [max_blocks, BLOCK, BLOCK] spec dtype: saved gate pre-activation blocks
    pre_up_ptr,  # [max_blocks, BLOCK, BLOCK] spec dtype: saved up pre-activation blocks (GATED only)
    dpre_gate_ptr,  # [max_blocks, BLOCK, BLOCK] spec dtype (out): d(gate pre-activation) blocks
    dpre_up_ptr,  # [max_blocks, BLOCK, BLOCK] spec dtype (out, GATED only): d(up pre-activation) blocks
    H,
    inter,
    TOP_K,
    NB_I,
    num_experts,
    stride_dyt,
    stride_we,
    stride_wh,
    stride_wi,
    stride_se,
    BLOCK: tl.constexpr,
    GATED: tl.constexpr,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr,
    SWIGLU_LIMIT: tl.constexpr,
    SWIGLU_UP_OFFSET: tl.constexpr,
    SCALE_OUTPUT: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    pid, b, col_block = sdd_block(block_col_ptr, BLOCK, BLOCK_M, BLOCK_N)
    if col_block < 0:  # past the used blocks (host-side grid bound); here, not in sdd_block: helpers cannot return
        return
    expert, offs_m, offs_n, row_ok, safe_pair, token, cols, col_ok = sdd_tile(
        pid, b, col_block, block_row_ptr, row_to_pair_ptr, inter, TOP_K, NB_I, BLOCK, BLOCK_M, BLOCK_N
    )
    offs_k = tl.arange(0, BLOCK_K)

    dy_ptrs = dy_ptr + token[:, None] * stride_dyt + offs_k[None, :]
    w_expert = expert_base(w2_ptr, shared_w2_ptr, expert, num_experts, stride_we, stride_se, HAS_SHARED)
    w_ptrs = w_expert + offs_k[:, None].to(tl.int64) * stride_wh + cols[None, :] * stride_wi
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        k_ok = (k0 + offs_k) < H
        a = tl.load(dy_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        acc = mma(a, w, acc, UPCAST_BF16, FP32_IEEE)
        dy_ptrs += BLOCK_K
        w_ptrs += BLOCK_K * stride_wh
    # the router weight scales whole rows, so it is applied to the fp32 product, not to dy
    if SCALE_OUTPUT:
        pair_weight = tl.load(out_w_ptr + safe_pair, mask=row_ok, other=0.0)
        dh = acc * pair_weight[:, None]
    else:
        dh = acc

    tile = b * (BLOCK * BLOCK) + offs_m[:, None] * BLOCK + offs_n[None, :]
    gate = tl.load(pre_gate_ptr + tile).to(tl.float32)
    if GATED:
        up = tl.load(pre_up_ptr + tile).to(tl.float32)
    else:
        up = gate
    d_gate, d_up = activation_backward(gate, up, dh, ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET)
    keep = row_ok[:, None] & col_ok[None, :]
    tl.store(dpre_gate_ptr + tile, cast_for_store(tl.where(keep, d_gate, 0.0), dpre_gate_ptr, ROUND_BF16))
    if GATED:
        tl.store(dpre_up_ptr + tile, cast_for_store(tl.where(keep, d_up, 0.0), dpre_up_ptr, ROUND_BF16))
