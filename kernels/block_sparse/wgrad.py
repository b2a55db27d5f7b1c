"""Weight-gradient kernel: per expert, (block-sparse)^T x (dense rows gathered by token).

For column block c = e*NB_I + j of the hidden activation, the blocks of that column are the
row blocks of expert e; the transposed index lists them (column-major order of the same blocks):
blocks block_index_t[column_offsets_t[c] .. column_offsets_t[c+1]], with their row blocks.

    out[e, g*I + i, n] = sum over rows r of expert e of S_g[r, i] * D[pair(r) // ROWS_PER_D, n]

  dW2 = h^T . (w * dy):    S = activation blocks, D = w * dy per pair ([T*k, H], scaled by the
                            launcher: ROWS_PER_D = 1), written transposed into dW2 [E, H, I];
  dW1 = d(pre)^T . x:       S = d(pre-activation) blocks (gate, up slices), D = x (ROWS_PER_D = k),
                            written into dW1 [E, G*I, H].
D is never scaled inside the kernel: an operand that passes through registers before the dot
cannot be staged straight into shared memory, and ptxas showed the fp32 variant spilling.
With the router weight on the expert's input (Llama-4) dW1's D is w * x per pair (ROWS_PER_D = 1), and
dW2's D is dy per token (ROWS_PER_D = k).

Bias gradients come from the same pass (BIAS_GRAD), deterministic too:
  BIAS_FROM_SPARSE  db1[e, g*I + i] = sum over rows of S_g[r, i]   (with dW1; the programs of column 0 of N)
  BIAS_FROM_DENSE   db2[e, n]       = sum over rows of D[pair(r), n] (with dW2; the programs of the expert's
                                      first column block and first row tile)

Each program owns one [BLOCK_M, BLOCK_N] output tile and sums its rows in a fixed order: the
weight gradients are deterministic (no atomics). Experts with no token get exact zeros.
"""

import triton
import triton.language as tl

from moebench.kernels.block_sparse.blocks import dense_columns, sub_block
from moebench.kernels.common.matmul import mma
from moebench.kernels.common.rounding import cast_for_store

# BIAS_GRAD: which bias gradient the pass also computes (host code reads BIAS_GRAD_CODES)
BIAS_GRAD_CODES = {None: 0, "sparse": 1, "dense": 2}
BIAS_FROM_SPARSE: tl.constexpr = tl.constexpr(BIAS_GRAD_CODES["sparse"])
BIAS_FROM_DENSE: tl.constexpr = tl.constexpr(BIAS_GRAD_CODES["dense"])


@triton.jit
def sparse_t_dense_kernel(
    s_ptr,  # [NUM_SLICES, max_blocks, BLOCK, BLOCK] spec dtype: sparse operand blocks, slices s_slice_stride apart
    d_ptr,  # [T*k / ROWS_PER_D, N] spec dtype: dense operand (row pair // ROWS_PER_D), row stride stride_dt
    row_to_pair_ptr,  # [max_rows] int32: pair id of each padded row, -1 = padding
    column_offsets_t_ptr,  # [E * NB_I + 1] int32: first transposed entry of each column block
    block_index_t_ptr,  # [max_blocks] int32: block index, column-major order
    block_row_t_ptr,  # [max_blocks] int32: row block, column-major order
    out_ptr,  # per-expert gradient, weight dtype (out): (g*I + i, n) at e*stride_oe + (g*I+i)*stride_oi + n*stride_on
    bias_grad_ptr,  # [E, G*I] (BIAS_FROM_SPARSE) or [E, N] (BIAS_FROM_DENSE) bias dtype (out), row stride stride_bg
    N,
    inter,
    ROWS_PER_D,
    NB_I,
    s_slice_stride,
    stride_dt,
    stride_oe,
    stride_oi,
    stride_on,
    stride_bg,
    BIAS_GRAD: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    column_block, offs_i = sub_block(BLOCK, BLOCK_M)  # offs_i: columns within the block
    g = tl.program_id(2)  # slice: gate (0) or up (1)
    expert = (column_block // NB_I).to(tl.int64)
    i = (column_block % NB_I) * BLOCK + offs_i  # index into I
    offs_n, n_ok = dense_columns(N, BLOCK_N)
    offs_r = tl.arange(0, BLOCK_K)
    start = tl.load(column_offsets_t_ptr + column_block)
    end = tl.load(column_offsets_t_ptr + column_block + 1)

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    if BIAS_GRAD == BIAS_FROM_SPARSE:
        bias_acc = tl.full((BLOCK_M,), 0.0, dtype=tl.float32)
    elif BIAS_GRAD == BIAS_FROM_DENSE:
        bias_acc = tl.full((BLOCK_N,), 0.0, dtype=tl.float32)
    s_slice = s_ptr + g.to(tl.int64) * s_slice_stride
    for t in range(start, end):
        b = tl.load(block_index_t_ptr + t).to(tl.int64)
        row_block = tl.load(block_row_t_ptr + t).to(tl.int64)
        for r0 in range(0, BLOCK, BLOCK_K):
            rows = r0 + offs_r  # rows within the block
            # S^T tile [BLOCK_M, BLOCK_K]: element (i, r) = S[b][r, i]; inside block b by construction
            s_t = tl.load(s_slice + b * (BLOCK * BLOCK) + rows[None, :] * BLOCK + offs_i[:, None])
            pair = tl.load(row_to_pair_ptr + row_block * BLOCK + rows)
            row_ok = pair >= 0
            d_row = tl.where(row_ok, pair, 0).to(tl.int64) // ROWS_PER_D
            d = tl.load(
                d_ptr + d_row[:, None] * stride_dt + offs_n[None, :], mask=row_ok[:, None] & n_ok[None, :], other=0.0
            )
            acc = mma(s_t, d, acc, UPCAST_BF16, FP32_IEEE)
            if BIAS_GRAD == BIAS_FROM_SPARSE:
                bias_acc += tl.sum(s_t.to(tl.float32), axis=1)
            elif BIAS_GRAD == BIAS_FROM_DENSE:
                bias_acc += tl.sum(d.to(tl.float32), axis=0)

    out_rows = (g * inter + i).to(tl.int64)
    tl.store(
        out_ptr + expert * stride_oe + out_rows[:, None] * stride_oi + offs_n[None, :].to(tl.int64) * stride_on,
        cast_for_store(acc, out_ptr, ROUND_BF16),
        mask=(i < inter)[:, None] & n_ok[None, :],
    )
    # constexpr switch, then the runtime test (kept apart: the constexpr prunes the branch at compile time)
    if BIAS_GRAD == BIAS_FROM_SPARSE:  # noqa: SIM102
        if tl.program_id(1) == 0:  # one program per (expert, column of G*I): those of the first N block
            bias = cast_for_store(bias_acc, bias_grad_ptr, ROUND_BF16)
            tl.store(bias_grad_ptr + expert * stride_bg + out_rows, bias, mask=i < inter)
    elif BIAS_GRAD == BIAS_FROM_DENSE:  # noqa: SIM102
        # one program per (expert, n): the expert's first column block and row tile, gate slice
        if (column_block % NB_I == 0) & (tl.program_id(0) % (BLOCK // BLOCK_M) == 0) & (g == 0):
            bias = cast_for_store(bias_acc, bias_grad_ptr, ROUND_BF16)
            tl.store(bias_grad_ptr + expert * stride_bg + offs_n, bias, mask=n_ok)
