"""Decode path of the MoE FFN on quantised expert weights: few pairs, no sorting, no padding, each packed
weight byte read once (the quantised twin of moebench.kernels.triton_grouped.decode; same program layout).

Grid (S, N blocks). Program s works for ONE expert e and one block of BLOCK_N output columns: with
BY_EXPERT=False (T*k <= E) e = ids[s] and the program runs only if pair s is e's first pair; with
BY_EXPERT=True e = s. It streams e's packed weight slab through the K loop once per BLOCK_M pairs of e
(rows of other experts masked to zero, so the tensor-core product stays legal: M >= 16).

One kernel, `quant_decode_kernel`, serves both layers (constexpr FIRST), with per-pair rows throughout:
  FIRST:     h[pair] = act([w_in *] a[token(pair)] @ w1[e].T [+ b1[e]])
  not FIRST: y[pair] = (h[pair] @ w2[e].T [+ b2[e]]) [* w_out[pair]]
Weight formats, the K loop, shared-expert chunks and the epilogue: moebench.kernels.triton_grouped.quant_tiles.
"""

import triton
import triton.language as tl

from moebench.kernels.common.activation import ACT_SWIGLU
from moebench.kernels.common.rounding import cast_for_store
from moebench.kernels.triton_grouped.decode import pairs_of_expert, program_expert
from moebench.kernels.triton_grouped.quant_tiles import expert_product, layer_epilogue


@triton.jit
def quant_decode_kernel(
    a_ptr,  # FIRST: x [T, H]; else h [P, I]; compute dtype, or e4m3 codes for FMT_FP8; (stride_am, 1)
    as_ptr,  # FMT_FP8 only: [rows of a, ceil(K/128)] fp32 activation scales, (stride_asm, 1)
    ap_ptr,  # HAS_SHARED: a unquantised (x, or h: fp32 for FMT_FP8), (stride_apm, 1)
    wq_ptr,  # [E, N (x2 for swiglu's gate and up), Kd] weight codes (uint8, or e4m3), (stride_qe, stride_qn, 1)
    ws_ptr,  # [E, ceil(N/SCALE_ROWS), ceil(K/GROUP)] scales (fp32/fp16/bf16, or e8m0 uint8), (stride_se, stride_sn, 1)
    wz_ptr,  # ASYM only: [E, N, Zd] uint8 zero points, strides (stride_ze, stride_zn, 1)
    sh_ptr,  # HAS_SHARED: [S', N (x2 for swiglu), K] shared chunks, compute dtype, (stride_he, stride_hn, stride_hk)
    out_ptr,  # FIRST: h [P, I]; else y [P, H] (out [T, H] when k == 1); (stride_om, 1)
    in_w_ptr,  # [P] fp32 router weight on the expert's input (FIRST, SCALE_INPUT)
    out_w_ptr,  # [P] fp32 router weight on the expert's output (not FIRST, SCALE_OUTPUT)
    b_ptr,  # HAS_BIAS: FIRST b1 [E, G*I], else b2 [E, H]; compute dtype, (stride_be, 1)
    topk_ids_ptr,  # [P] int64: expert of each pair (shared chunks >= num_experts)
    num_pairs,
    top_k,
    N,  # output columns (I for the first layer, H for the down layer)
    K,  # reduction length (H, or I)
    num_experts,  # routed experts E
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
    BY_EXPERT: tl.constexpr,
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
    GROUP: tl.constexpr,
    SCALE_ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr,  # pairs per product (the decode kernels' BLOCK_P)
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    GATED: tl.constexpr = FIRST and ACTIVATION == ACT_SWIGLU
    expert = program_expert(topk_ids_ptr, tl.program_id(0), BY_EXPERT, BLOCK_M)
    if expert < 0:  # another program serves this expert
        return
    expert = expert.to(tl.int64)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    for p0 in range(0, num_pairs, BLOCK_M):
        pairs, mine = pairs_of_expert(topk_ids_ptr, p0, num_pairs, expert, BLOCK_M)
        if tl.sum(mine.to(tl.int32), axis=0) > 0:
            rows = pairs.to(tl.int64)
            a_rows = rows // top_k if FIRST else rows
            acc_g, acc_u = expert_product(
                a_ptr, as_ptr, ap_ptr, wq_ptr, ws_ptr, wz_ptr, sh_ptr, expert, a_rows, mine, offs_n, N, K,
                num_experts, stride_am, stride_asm, stride_apm, stride_qe, stride_qn, stride_se, stride_sn,
                stride_ze, stride_zn, stride_he, stride_hn, stride_hk,
                GATED, FMT, ASYM, GROUP, SCALE_ROWS, HAS_SHARED, EVEN_K, BLOCK_M, BLOCK_N, BLOCK_K,
                UPCAST_BF16, FP32_IEEE,
            )  # fmt: skip
            result = layer_epilogue(
                acc_g, acc_u, in_w_ptr, out_w_ptr, b_ptr, pairs, mine, expert, offs_n, N, num_experts, stride_be,
                FIRST, GATED, ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET, SCALE_INPUT, SCALE_OUTPUT,
                HAS_BIAS, HAS_SHARED,
            )  # fmt: skip
            out_ptrs = out_ptr + rows[:, None] * stride_om + offs_n[None, :]
            tl.store(out_ptrs, cast_for_store(result, out_ptr, ROUND_BF16), mask=mine[:, None] & (offs_n < N)[None, :])
