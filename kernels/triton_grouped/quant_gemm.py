"""Grouped GEMMs of the MoE FFN on quantised expert weights (moebench.quant formats), over expert-sorted,
BLOCK_M-padded pairs (moebench.kernels.common.align), for both layers of the FFN.

One kernel, `quant_grouped_kernel`, serves both layers (constexpr FIRST):
  FIRST:     h[row] = act(a[token(row)] @ w1[e].T)   rows = sorted positions (gate and up tiles for swiglu)
  not FIRST: y[pair] = topk_weight[pair] * (a[row] @ w2[e].T)   a = h, rows of y = pair ids

Weight formats (constexpr FMT; the storage is QuantFormat.layout's, last dims contiguous):
  FMT_FP8    e4m3 codes [E, N, K], fp32 scales per 128x128 block [E, ceil(N/128), ceil(K/128)]; the
             activations come quantised too (e4m3 codes + one fp32 scale per row per 128 along K, from
             act_quant_kernel). Each K tile (BLOCK_K divides 128) is one FP8 tl.dot, scaled by the row's
             activation scale and the column's block scale and added to the fp32 accumulator: the
             DeepSeek-V3 block-scaled GEMM as Hopper runs it.
  FMT_INT4 / FMT_INT8 / FMT_MXFP4  weight-only: codes unpacked and dequantised in registers,
             (code - zero) * scale (int, zero = 8 / 128 or the stored zero point when ASYM) or
             e2m1(code) * 2^(e8m0 - 127) (mxfp4), then a dot in the activations' dtype (`mma`).
Masks: A rows by row_ok, the K tail by k < K (weight values past K are zeroed after dequantisation);
weight rows are taken modulo N (always in bounds) and the store is masked.
"""

import triton
import triton.language as tl

from moebench.kernels.common.activation import ACT_SWIGLU, activation_forward
from moebench.kernels.common.matmul import mma
from moebench.kernels.common.rounding import cast_for_store
from moebench.kernels.triton_grouped.tiles import swizzle_pid

# moebench.quant format kind -> the kernels' FMT constexpr (host code reads this table)
QUANT_FMT_CODES = {"fp8": 0, "int4": 1, "int8": 2, "mxfp4": 3}
FMT_FP8: tl.constexpr = tl.constexpr(QUANT_FMT_CODES["fp8"])
FMT_INT4: tl.constexpr = tl.constexpr(QUANT_FMT_CODES["int4"])
FMT_INT8: tl.constexpr = tl.constexpr(QUANT_FMT_CODES["int8"])
FMT_MXFP4: tl.constexpr = tl.constexpr(QUANT_FMT_CODES["mxfp4"])


@triton.jit
def weight_tile(
    wq_ptr,  # this expert's codes [N, Kd] (see the module docstring), row stride stride_qn
    ws_ptr,  # this expert's scales [ceil(N/SCALE_ROWS), ceil(K/GROUP)], row stride stride_sn
    wz_ptr,  # this expert's zero points [N, Zd] uint8 (ASYM only), row stride stride_zn
    rows,  # [BLOCK_N] weight rows (in bounds)
    k,  # [BLOCK_K] K positions
    k_ok,  # [BLOCK_K] k < K
    stride_qn,
    stride_sn,
    stride_zn,
    FMT: tl.constexpr,
    ASYM: tl.constexpr,
    GROUP: tl.constexpr,
    SCALE_ROWS: tl.constexpr,
):
    """The [BLOCK_K, BLOCK_N] weight tile: e4m3 codes for FMT_FP8 (scaled after the dot), else fp32 values.
    One return at the end: the compiler rejects a constexpr branch that returns early."""
    if FMT == FMT_FP8:
        w = tl.load(wq_ptr + rows[None, :] * stride_qn + k[:, None], mask=k_ok[:, None], other=0.0)
    else:
        if FMT == FMT_INT8:
            code = tl.load(wq_ptr + rows[None, :] * stride_qn + k[:, None], mask=k_ok[:, None], other=0)
        else:  # two codes per byte, the even element in the low nibble
            byte = tl.load(wq_ptr + rows[None, :] * stride_qn + (k // 2)[:, None], mask=k_ok[:, None], other=0)
            code = (byte >> ((k % 2) * 4).to(tl.uint8)[:, None]) & 15
        s = tl.load(ws_ptr + rows[None, :] * stride_sn + (k // GROUP)[:, None], mask=k_ok[:, None], other=0)
        if FMT == FMT_MXFP4:
            mag = (code & 7).to(tl.float32)
            big = tl.exp2(tl.floor(mag * 0.5) - 1.0) * (1.0 + (mag - 2.0 * tl.floor(mag * 0.5)) * 0.5)
            value = tl.where(mag < 2.0, mag * 0.5, big)
            value = tl.where((code & 8) != 0, -value, value)
            w = value * tl.exp2(s.to(tl.float32) - 127.0)
        else:
            if ASYM:
                g = k // GROUP
                if FMT == FMT_INT4:
                    zb = tl.load(wz_ptr + rows[None, :] * stride_zn + (g // 2)[:, None], mask=k_ok[:, None], other=0)
                    zero = ((zb >> ((g % 2) * 4).to(tl.uint8)[:, None]) & 15).to(tl.float32)
                else:
                    zero = tl.load(wz_ptr + rows[None, :] * stride_zn + g[:, None], mask=k_ok[:, None], other=0)
                    zero = zero.to(tl.float32)
            else:
                zero = 8.0 if FMT == FMT_INT4 else 128.0
            w = (code.to(tl.float32) - zero) * s.to(tl.float32)
        w = tl.where(k_ok[:, None], w, 0.0)
    return w


@triton.jit
def quant_grouped_kernel(
    a_ptr,  # FIRST: x [T, H]; else h [max_blocks*BLOCK_M, I]; compute dtype, or e4m3 codes for FMT_FP8; (stride_am, 1)
    as_ptr,  # FMT_FP8 only: [rows of a, ceil(K/128)] fp32 activation scales, (stride_asm, 1)
    wq_ptr,  # [E, N, Kd] weight codes (uint8, or e4m3 for FMT_FP8), strides (stride_qe, stride_qn, 1)
    ws_ptr,  # [E, ceil(N/SCALE_ROWS), ceil(K/GROUP)] scales (fp32/fp16/bf16, or e8m0 uint8), (stride_se, stride_sn, 1)
    wz_ptr,  # ASYM only: [E, N, Zd] uint8 zero points, strides (stride_ze, stride_zn, 1)
    out_ptr,  # FIRST: h [max_blocks*BLOCK_M, I]; else y [P, H] (out [T, H] when k == 1); (stride_om, 1)
    topk_weights_ptr,  # [P] fp32 router weight of each pair (not FIRST)
    sorted_pairs_ptr,  # [max_blocks*BLOCK_M] int32: pair id per sorted position, >= num_pairs = padding
    block_expert_ptr,  # [max_blocks] int32
    num_blocks_ptr,  # [1] int32 (device side)
    num_pairs,
    top_k,
    N,  # output columns (I for the first layer, H for the down layer)
    K,  # reduction length (H, or I)
    max_blocks,
    stride_am,
    stride_asm,
    stride_qe,
    stride_qn,
    stride_se,
    stride_sn,
    stride_ze,
    stride_zn,
    stride_om,
    FIRST: tl.constexpr,
    ACTIVATION: tl.constexpr,
    FMT: tl.constexpr,
    ASYM: tl.constexpr,
    GROUP: tl.constexpr,  # K elements per scale (128 for fp8, 32 for mxfp4, g for int)
    SCALE_ROWS: tl.constexpr,  # N rows per scale (128 for fp8, else 1)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,  # FMT_FP8: divides 128
    GROUP_M: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    GATED: tl.constexpr = FIRST and ACTIVATION == ACT_SWIGLU
    pid_m, pid_n = swizzle_pid(tl.program_id(0), max_blocks, tl.cdiv(N, BLOCK_N), GROUP_M)
    if pid_m >= tl.load(num_blocks_ptr):
        return
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pairs = tl.load(sorted_pairs_ptr + rows)
    row_ok = pairs < num_pairs
    a_rows = (pairs // top_k).to(tl.int64) if FIRST else rows.to(tl.int64)
    expert = tl.load(block_expert_ptr + pid_m).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    w_rows = offs_n % N
    up_rows = w_rows + N  # swiglu: the up row of each gate row
    wq = wq_ptr + expert * stride_qe
    ws = ws_ptr + expert * stride_se
    wz = wz_ptr + expert * stride_ze
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    offs_k = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        k_ok = k < K
        a = tl.load(a_ptr + a_rows[:, None] * stride_am + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        wg = weight_tile(wq, ws, wz, w_rows, k, k_ok, stride_qn, stride_sn, stride_zn, FMT, ASYM, GROUP, SCALE_ROWS)
        if FMT == FMT_FP8:
            a_s = tl.load(as_ptr + a_rows * stride_asm + k0 // GROUP, mask=row_ok, other=0.0)
            s_g = tl.load(ws + (w_rows // SCALE_ROWS) * stride_sn + k0 // GROUP)
            acc_g += tl.dot(a, wg) * a_s[:, None] * s_g[None, :]
        elif UPCAST_BF16:
            acc_g = mma(a, wg, acc_g, UPCAST_BF16, FP32_IEEE)
        else:
            acc_g = mma(a, wg.to(a.dtype), acc_g, UPCAST_BF16, FP32_IEEE)
        if GATED:
            wu = weight_tile(
                wq, ws, wz, up_rows, k, k_ok, stride_qn, stride_sn, stride_zn, FMT, ASYM, GROUP, SCALE_ROWS
            )
            if FMT == FMT_FP8:
                s_u = tl.load(ws + (up_rows // SCALE_ROWS) * stride_sn + k0 // GROUP)
                acc_u += tl.dot(a, wu) * a_s[:, None] * s_u[None, :]
            elif UPCAST_BF16:
                acc_u = mma(a, wu, acc_u, UPCAST_BF16, FP32_IEEE)
            else:
                acc_u = mma(a, wu.to(a.dtype), acc_u, UPCAST_BF16, FP32_IEEE)
    if FIRST:
        result = activation_forward(acc_g, acc_u, ACTIVATION)
        out_rows = rows.to(tl.int64)
    else:
        result = acc_g * tl.load(topk_weights_ptr + pairs, mask=row_ok, other=0.0)[:, None]
        out_rows = pairs.to(tl.int64)
    out_ptrs = out_ptr + out_rows[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, cast_for_store(result, out_ptr, ROUND_BF16), mask=row_ok[:, None] & (offs_n < N)[None, :])
