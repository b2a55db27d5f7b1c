"""Tile helpers of the quantised-expert kernels (quant_gemm: grouped, quant_decode: small T), all @triton.jit.

Weight formats (constexpr FMT; the storage is moebench.quant's QuantFormat.layout, last dims contiguous):
  FMT_FP8    e4m3 codes [E, N, K], fp32 scales per 128x128 block [E, ceil(N/128), ceil(K/128)]; the
             activations come quantised too (e4m3 codes + one fp32 scale per row per 128 along K, from
             moebench.kernels.common.fp8.act_quant_kernel). Each K tile (BLOCK_K divides 128) is one FP8
             tl.dot, scaled by the row's activation scale and the column's block scale and added to the fp32
             accumulator: the DeepSeek-V3 block-scaled GEMM as Hopper runs it.
  FMT_INT4 / FMT_INT8 / FMT_MXFP4  weight-only: codes unpacked and dequantised in registers,
             (code - zero) * scale (int, zero = 8 / 128 or the stored zero point when ASYM) or
             e2m1(code) * 2^(e8m0 - 127) (mxfp4), then a dot in the activations' dtype (`mma`).

- `weight_tile`: one [BLOCK_K, BLOCK_N] weight tile of a quantised expert, with its columns' fp8 block scale.
- `quant_dot`: one K tile's product into the accumulator, as the format needs it.
- `quant_product`: the K loop of a quantised expert (one weight operand, or SwiGLU's gate and up sharing A).
- `expert_product`: that, or for an appended shared-expert chunk (expert >= num_experts, unquantised weights in
  the compute dtype: moebench.impls.common.pairs) the plain K loop of the unquantised kernels (tiles.expert_tile)
  on the unquantised activations.
- `layer_epilogue`: the expert options of either layer (moebench.kernels.common.epilogue) and the activation.
Masks: A rows by row_ok, the K tail by k < K (weight values past K are zeroed after dequantisation); weight
rows are taken modulo N (always in bounds) and the callers mask the store.
"""

import triton
import triton.language as tl

from moebench.kernels.common.activation import activation_forward
from moebench.kernels.common.epilogue import expert_output, pre_activation
from moebench.kernels.common.matmul import mma
from moebench.kernels.triton_grouped.tiles import expert_tile

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
    k0,  # first K position of the tile
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
    """(the [BLOCK_K, BLOCK_N] weight tile, the columns' scale): e4m3 codes and their [BLOCK_N] fp32 block scale
    for FMT_FP8 (applied after the dot), else fp32 values and 1.0. One return at the end: the compiler rejects a
    constexpr branch that returns early."""
    if FMT == FMT_FP8:
        w = tl.load(wq_ptr + rows[None, :] * stride_qn + k[:, None], mask=k_ok[:, None], other=0.0)
        col_scale = tl.load(ws_ptr + (rows // SCALE_ROWS) * stride_sn + k0 // GROUP)
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
        col_scale = 1.0
    return w, col_scale


@triton.jit
def quant_dot(acc, a, w, a_scale, w_scale, FMT: tl.constexpr, UPCAST_BF16: tl.constexpr, FP32_IEEE: tl.constexpr):
    """acc [BM, BN] fp32 + a [BM, BK] @ w [BK, BN]: FMT_FP8 scales the e4m3 dot by a_scale [BM] (the rows'
    activation scales) and w_scale [BN] (the columns' block scales); the weight-only formats cast the
    dequantised w to a's dtype for `mma` (under the interpreter's bf16 workaround, mma upcasts both)."""
    if FMT == FMT_FP8:
        acc += tl.dot(a, w) * a_scale[:, None] * w_scale[None, :]
    elif UPCAST_BF16:
        acc = mma(a, w, acc, UPCAST_BF16, FP32_IEEE)
    else:
        acc = mma(a, w.to(a.dtype), acc, UPCAST_BF16, FP32_IEEE)
    return acc


@triton.jit
def quant_product(
    a_ptr,  # [rows of A, K] compute dtype, or e4m3 codes for FMT_FP8; (stride_am, 1)
    as_ptr,  # FMT_FP8 only: [rows of A, ceil(K/GROUP)] fp32 activation scales, (stride_asm, 1)
    wq_ptr,  # this expert's codes [N (x2 when GATED), Kd], row stride stride_qn
    ws_ptr,  # this expert's scales, row stride stride_sn
    wz_ptr,  # this expert's zero points (ASYM only), row stride stride_zn
    a_rows,  # [BLOCK_M] int64 rows of A
    row_ok,  # [BLOCK_M] bool: rows that exist
    w_rows,  # [BLOCK_N] (gate) weight rows, in bounds
    N,  # output columns: the up row of gate row r is r + N (GATED)
    K,
    stride_am,
    stride_asm,
    stride_qn,
    stride_sn,
    stride_zn,
    GATED: tl.constexpr,
    FMT: tl.constexpr,
    ASYM: tl.constexpr,
    GROUP: tl.constexpr,
    SCALE_ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
):
    """(acc_gate, acc_up) [BLOCK_M, BLOCK_N] fp32 of a quantised expert; acc_up stays zero unless GATED."""
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    offs_k = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        k_ok = k < K
        a = tl.load(a_ptr + a_rows[:, None] * stride_am + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        if FMT == FMT_FP8:
            a_s = tl.load(as_ptr + a_rows * stride_asm + k0 // GROUP, mask=row_ok, other=0.0)
        else:
            a_s = 1.0
        wg, s_g = weight_tile(
            wq_ptr, ws_ptr, wz_ptr, w_rows, k0, k, k_ok, stride_qn, stride_sn, stride_zn, FMT, ASYM, GROUP, SCALE_ROWS
        )
        acc_g = quant_dot(acc_g, a, wg, a_s, s_g, FMT, UPCAST_BF16, FP32_IEEE)
        if GATED:
            wu, s_u = weight_tile(
                wq_ptr, ws_ptr, wz_ptr, w_rows + N, k0, k, k_ok, stride_qn, stride_sn, stride_zn,
                FMT, ASYM, GROUP, SCALE_ROWS,
            )  # fmt: skip
            acc_u = quant_dot(acc_u, a, wu, a_s, s_u, FMT, UPCAST_BF16, FP32_IEEE)
    return acc_g, acc_u


@triton.jit
def expert_product(
    a_ptr,  # [rows of A, K] quantised-GEMM input (see quant_product), (stride_am, 1)
    as_ptr,  # FMT_FP8 only: its fp32 scales, (stride_asm, 1)
    ap_ptr,  # HAS_SHARED: [rows of A, K] the same input unquantised (compute dtype, or fp32 h), (stride_apm, 1)
    wq_ptr,  # [E, N (x2 when GATED), Kd] codes, strides (stride_qe, stride_qn, 1)
    ws_ptr,  # [E, ., .] scales, strides (stride_se, stride_sn, 1)
    wz_ptr,  # ASYM only: [E, N, Zd] zero points, strides (stride_ze, stride_zn, 1)
    sh_ptr,  # HAS_SHARED: [S', N (x2 when GATED), K] compute dtype shared chunks, (stride_he, stride_hn, stride_hk)
    expert,  # int64: < num_experts a routed (quantised) expert, else shared chunk expert - num_experts
    a_rows,  # [BLOCK_M] int64 rows of A
    row_ok,  # [BLOCK_M] bool
    offs_n,  # [BLOCK_N] output columns
    N,
    K,
    num_experts,
    stride_am,
    stride_asm,
    stride_apm,
    stride_qe,
    stride_qn,
    stride_se,
    stride_sn,
    stride_ze,
    stride_zn,
    stride_he,
    stride_hn,
    stride_hk,
    GATED: tl.constexpr,
    FMT: tl.constexpr,
    ASYM: tl.constexpr,
    GROUP: tl.constexpr,
    SCALE_ROWS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
):
    """(acc_gate, acc_up) [BLOCK_M, BLOCK_N] fp32 of `expert` for these rows and columns."""
    w_rows = offs_n % N
    wq, ws, wz = wq_ptr + expert * stride_qe, ws_ptr + expert * stride_se, wz_ptr + expert * stride_ze
    # the routed product, in both branches below: a constexpr branch cannot share a runtime one's condition
    if HAS_SHARED:
        if expert >= num_experts:  # an appended shared chunk: unquantised weights and input
            offs_k = tl.arange(0, BLOCK_K)
            acc_g, acc_u = expert_tile(
                ap_ptr + a_rows[:, None] * stride_apm + offs_k[None, :],
                sh_ptr + (expert - num_experts) * stride_he + w_rows[None, :] * stride_hn + offs_k[:, None] * stride_hk,
                row_ok, N * stride_hn, K, BLOCK_K, BLOCK_K * stride_hk,
                GATED, BLOCK_M, BLOCK_N, BLOCK_K, EVEN_K, UPCAST_BF16, FP32_IEEE,
            )  # fmt: skip
        else:
            acc_g, acc_u = quant_product(
                a_ptr, as_ptr, wq, ws, wz, a_rows, row_ok, w_rows, N, K, stride_am, stride_asm, stride_qn, stride_sn,
                stride_zn, GATED, FMT, ASYM, GROUP, SCALE_ROWS, BLOCK_M, BLOCK_N, BLOCK_K, UPCAST_BF16, FP32_IEEE,
            )  # fmt: skip
    else:
        acc_g, acc_u = quant_product(
            a_ptr, as_ptr, wq, ws, wz, a_rows, row_ok, w_rows, N, K, stride_am, stride_asm, stride_qn, stride_sn,
            stride_zn, GATED, FMT, ASYM, GROUP, SCALE_ROWS, BLOCK_M, BLOCK_N, BLOCK_K, UPCAST_BF16, FP32_IEEE,
        )  # fmt: skip
    return acc_g, acc_u


@triton.jit
def layer_epilogue(
    acc_g,  # [BLOCK_M, BLOCK_N] fp32: the (gate) product
    acc_u,  # [BLOCK_M, BLOCK_N] fp32: the up product (GATED)
    in_w_ptr,  # [P] fp32 router weight on the expert's input (FIRST and SCALE_INPUT)
    out_w_ptr,  # [P] fp32 router weight on the expert's output (not FIRST and SCALE_OUTPUT)
    b_ptr,  # HAS_BIAS: b1 [E, G*I] (FIRST) or b2 [E, H], compute dtype, row stride stride_be
    pairs,  # [BLOCK_M] pair id of each row (read where row_ok)
    row_ok,  # [BLOCK_M] bool
    expert,  # int64
    offs_n,  # [BLOCK_N] output columns
    N,
    num_experts,
    stride_be,
    FIRST: tl.constexpr,
    GATED: tl.constexpr,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr,
    SWIGLU_LIMIT: tl.constexpr,
    SWIGLU_UP_OFFSET: tl.constexpr,
    SCALE_INPUT: tl.constexpr,
    SCALE_OUTPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
):
    """FIRST: act([w_in *] product [+ b1]); else (product [+ b2]) [* w_out]; [BLOCK_M, BLOCK_N] fp32."""
    col_ok = offs_n < N
    if FIRST:
        gate, up = pre_activation(
            acc_g, acc_u, in_w_ptr, pairs, row_ok, b_ptr, expert, offs_n, col_ok, N, num_experts, stride_be,
            GATED, SCALE_INPUT, HAS_BIAS, HAS_SHARED,
        )  # fmt: skip
        result = activation_forward(gate, up, ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET)
    else:
        result = expert_output(
            acc_g, out_w_ptr, pairs, row_ok, b_ptr, expert, offs_n, col_ok, num_experts, stride_be,
            SCALE_OUTPUT, HAS_BIAS, HAS_SHARED,
        )  # fmt: skip
    return result
