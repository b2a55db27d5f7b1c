"""Grouped GEMMs of the MoE FFN on quantised expert weights (moebench.quant formats), over expert-sorted,
BLOCK_M-padded pairs (moebench.kernels.common.align), for both layers of the FFN.

One kernel, `quant_grouped_kernel`, serves both layers (constexpr FIRST):
  FIRST:     h[row] = act([w_in *] a[token(row)] @ w1[e].T [+ b1[e]])   rows = sorted positions
  not FIRST: y[pair] = (a[row] @ w2[e].T [+ b2[e]]) [* w_out[pair]]     a = h, rows of y = pair ids
The pairs are moebench.impls.common.pairs': routed experts (quantised), then the shared experts' chunks as
experts >= num_experts (unquantised, compute dtype). Weight formats, the K loop and the epilogue:
moebench.kernels.triton_grouped.quant_tiles.
"""

import triton
import triton.language as tl

from moebench.kernels.common.activation import ACT_SWIGLU
from moebench.kernels.common.rounding import cast_for_store
from moebench.kernels.triton_grouped.quant_tiles import expert_product, layer_epilogue
from moebench.kernels.triton_grouped.tiles import swizzle_pid


@triton.jit
def quant_grouped_kernel(
    a_ptr,  # FIRST: x [T, H]; else h [max_blocks*BLOCK_M, I]; compute dtype, or e4m3 codes for FMT_FP8; (stride_am, 1)
    as_ptr,  # FMT_FP8 only: [rows of a, ceil(K/128)] fp32 activation scales, (stride_asm, 1)
    ap_ptr,  # HAS_SHARED: a unquantised (x, or h: fp32 for FMT_FP8), (stride_apm, 1)
    wq_ptr,  # [E, N (x2 for swiglu's gate and up), Kd] weight codes (uint8, or e4m3), (stride_qe, stride_qn, 1)
    ws_ptr,  # [E, ceil(N/SCALE_ROWS), ceil(K/GROUP)] scales (fp32/fp16/bf16, or e8m0 uint8), (stride_se, stride_sn, 1)
    wz_ptr,  # ASYM only: [E, N, Zd] uint8 zero points, strides (stride_ze, stride_zn, 1)
    sh_ptr,  # HAS_SHARED: [S', N (x2 for swiglu), K] shared chunks, compute dtype, (stride_he, stride_hn, stride_hk)
    out_ptr,  # FIRST: h [max_blocks*BLOCK_M, I]; else y [P, H] (out [T, H] when k == 1); (stride_om, 1)
    in_w_ptr,  # [P] fp32 router weight on the expert's input (FIRST, SCALE_INPUT)
    out_w_ptr,  # [P] fp32 router weight on the expert's output (not FIRST, SCALE_OUTPUT)
    b_ptr,  # HAS_BIAS: FIRST b1 [E, G*I], else b2 [E, H]; compute dtype, (stride_be, 1)
    sorted_pairs_ptr,  # [max_blocks*BLOCK_M] int32: pair id per sorted position, >= num_pairs = padding
    block_expert_ptr,  # [max_blocks] int32
    num_blocks_ptr,  # [1] int32 (device side)
    num_pairs,
    top_k,
    N,  # output columns (I for the first layer, H for the down layer)
    K,  # reduction length (H, or I)
    max_blocks,
    num_experts,  # routed experts E (ids >= E are shared chunks)
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
    stride_be,
    stride_om,
    FIRST: tl.constexpr,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr,
    SWIGLU_LIMIT: tl.constexpr,
    SWIGLU_UP_OFFSET: tl.constexpr,
    SCALE_INPUT: tl.constexpr,
    SCALE_OUTPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    FMT: tl.constexpr,
    ASYM: tl.constexpr,
    GROUP: tl.constexpr,  # K elements per scale (128 for fp8, 32 for mxfp4, g for int)
    SCALE_ROWS: tl.constexpr,  # N rows per scale (128 for fp8, else 1)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,  # FMT_FP8: divides 128
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0 (the shared chunks' unmasked loads)
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
    acc_g, acc_u = expert_product(
        a_ptr, as_ptr, ap_ptr, wq_ptr, ws_ptr, wz_ptr, sh_ptr, expert, a_rows, row_ok, offs_n, N, K, num_experts,
        stride_am, stride_asm, stride_apm, stride_qe, stride_qn, stride_se, stride_sn, stride_ze, stride_zn,
        stride_he, stride_hn, stride_hk,
        GATED, FMT, ASYM, GROUP, SCALE_ROWS, HAS_SHARED, EVEN_K, BLOCK_M, BLOCK_N, BLOCK_K, UPCAST_BF16, FP32_IEEE,
    )  # fmt: skip
    result = layer_epilogue(
        acc_g, acc_u, in_w_ptr, out_w_ptr, b_ptr, pairs, row_ok, expert, offs_n, N, num_experts, stride_be,
        FIRST, GATED, ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET, SCALE_INPUT, SCALE_OUTPUT,
        HAS_BIAS, HAS_SHARED,
    )  # fmt: skip
    out_rows = rows.to(tl.int64) if FIRST else pairs.to(tl.int64)
    out_ptrs = out_ptr + out_rows[:, None] * stride_om + offs_n[None, :]
    tl.store(out_ptrs, cast_for_store(result, out_ptr, ROUND_BF16), mask=row_ok[:, None] & (offs_n < N)[None, :])
