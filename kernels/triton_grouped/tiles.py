"""Tile helpers shared by the grouped-GEMM and decode MoE kernels (all @triton.jit, inlined).

- `swizzle_pid`: GROUP_M program ordering, so programs that run together share weight tiles in L2.
- `expert_weight_ptrs`: the weight tile pointers of one expert (routed, or an appended shared-expert chunk)
  for this program's output columns.
- `expert_tile`: the K loop of an expert product: one weight operand (the down layer, or gate only)
  or two sharing each A tile (SwiGLU's gate and up), one fp32 accumulator each.
- `gate_up_tile`, `down_tile`: the two layers' products with their epilogues (router weight on the input,
  b1, the activation; b2, router weight on the output: moebench.kernels.common.epilogue), what the grouped
  and the decode kernels of each layer share.

Every tile product goes through `mma` (moebench.kernels.common.matmul) so the interpreter's bf16 dot bug
workaround applies; the kernels using these tiles store through `cast_for_store`
(moebench.kernels.common.rounding) for the interpreter's truncating bf16 cast. Masks: A rows by `row_ok`
(padding rows, pairs of other experts) and, unless EVEN_K (K % BLOCK_K == 0), the K tail. Weight
columns are never masked on load: callers pass column offsets taken modulo N (always in bounds) and
mask the store instead.
"""

import triton
import triton.language as tl

from moebench.kernels.common.activation import ACT_SWIGLU, activation_forward
from moebench.kernels.common.epilogue import expert_base, expert_output, pre_activation
from moebench.kernels.common.matmul import mma


@triton.jit
def swizzle_pid(pid, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Program id -> (pid_m, pid_n), walking GROUP_M M-blocks down one N column before moving on."""
    width = GROUP_M * num_pid_n
    group = pid // width
    first_m = group * GROUP_M
    size_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m
    return pid_m, pid_n


@triton.jit
def expert_tile(
    a_ptrs,  # [BLOCK_M, BLOCK_K] pointers to the first K tile of the A rows (compute dtype, or fp32: cast to w's)
    w_ptrs,  # [BLOCK_K, BLOCK_N] pointers to the first K tile of the (gate) weight rows (compute dtype)
    row_ok,  # [BLOCK_M] bool: rows that exist (others load zeros)
    up_offset,  # elements from a gate row of w1 to the matching up row (I * stride of w1's rows); GATED only
    K,  # reduction length (hidden for the first layer, intermediate for the down layer)
    step_a,  # elements to advance a_ptrs by one K tile
    step_w,  # elements to advance w_ptrs by one K tile
    GATED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
):
    """Returns (acc_gate, acc_up) [BLOCK_M, BLOCK_N] fp32; acc_up stays zero (and is compiled away
    when unused) unless GATED."""
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    offs_k = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=row_ok[:, None], other=0.0)
            wg = tl.load(w_ptrs)
        else:
            k_ok = offs_k < K - k0
            a = tl.load(a_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            wg = tl.load(w_ptrs, mask=k_ok[:, None], other=0.0)
        if not UPCAST_BF16:  # a no-op but for fp32 A (quant_tiles' fp8 h) on compute-dtype weights
            a = a.to(wg.dtype)
        acc_g = mma(a, wg, acc_g, UPCAST_BF16, FP32_IEEE)
        if GATED:
            if EVEN_K:
                wu = tl.load(w_ptrs + up_offset)
            else:
                wu = tl.load(w_ptrs + up_offset, mask=(offs_k < K - k0)[:, None], other=0.0)
            acc_u = mma(a, wu, acc_u, UPCAST_BF16, FP32_IEEE)
        a_ptrs += step_a
        w_ptrs += step_w
    return acc_g, acc_u


@triton.jit
def expert_weight_ptrs(
    w_ptr,  # [E, N, K] compute dtype (w1 [E, G*I, H] or w2 [E, H, I]), strides (stride_we, stride_wn, stride_wk)
    shared_ptr,  # [S', N, K] compute dtype: appended shared-expert chunks, strides (stride_se, stride_wn, stride_wk)
    expert,  # int64: the expert whose weights this program reads (>= num_experts: a shared chunk)
    pid_n,  # this program's block of BLOCK_N output columns
    N,  # output columns (I for the first layer, H for the down layer)
    num_experts,
    stride_we,
    stride_se,
    stride_wn,
    stride_wk,
    HAS_SHARED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """(offs_n [BLOCK_N] output columns, offs_k [BLOCK_K], [BLOCK_K, BLOCK_N] pointers to the first K
    tile of the weight rows); columns are taken modulo N, so loads need no column mask."""
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = offs_n % N
    offs_k = tl.arange(0, BLOCK_K)
    base = expert_base(w_ptr, shared_ptr, expert, num_experts, stride_we, stride_se, HAS_SHARED)
    return offs_n, offs_k, base + cols[None, :] * stride_wn + offs_k[:, None] * stride_wk


@triton.jit
def gate_up_tile(
    a_ptrs,  # [BLOCK_M, BLOCK_K] pointers to the first K tile of the x rows (compute dtype)
    w_ptrs,  # [BLOCK_K, BLOCK_N] pointers to the first K tile of the gate rows of w1 (compute dtype)
    row_ok,  # [BLOCK_M] bool: rows that exist
    pairs,  # [BLOCK_M]: pair id of each row (read where row_ok)
    in_w_ptr,  # [P] fp32: router weight of each pair on the expert's input (SCALE_INPUT)
    b1_ptr,  # [E, G*I] compute dtype, row stride stride_b1e (HAS_BIAS)
    expert,  # int64
    offs_n,  # [BLOCK_N] output columns of I
    up_offset,  # I * stride of w1's rows: from a gate row to its up row (swiglu only)
    hidden,
    inter,
    num_experts,
    stride_b1e,
    step_a,  # elements to advance a_ptrs by one K tile
    step_w,  # elements to advance w_ptrs by one K tile
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
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
):
    """First layer: act([w_in *] x @ w1[e].T [+ b1[e]]) for the tile, [BLOCK_M, BLOCK_N] fp32."""
    gate, up = expert_tile(
        a_ptrs,
        w_ptrs,
        row_ok,
        up_offset,
        hidden,
        step_a,
        step_w,
        ACTIVATION == ACT_SWIGLU,
        BLOCK_M,
        BLOCK_N,
        BLOCK_K,
        EVEN_K,
        UPCAST_BF16,
        FP32_IEEE,
    )
    gate, up = pre_activation(
        gate,
        up,
        in_w_ptr,
        pairs,
        row_ok,
        b1_ptr,
        expert,
        offs_n,
        offs_n < inter,
        inter,
        num_experts,
        stride_b1e,
        ACTIVATION == ACT_SWIGLU,
        SCALE_INPUT,
        HAS_BIAS,
        HAS_SHARED,
    )
    return activation_forward(gate, up, ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET)


@triton.jit
def down_tile(
    a_ptrs,  # [BLOCK_M, BLOCK_K] pointers to the first K tile of the h rows (compute dtype, unit column stride)
    w_ptrs,  # [BLOCK_K, BLOCK_N] pointers to the first K tile of the w2 rows (compute dtype)
    row_ok,  # [BLOCK_M] bool: rows that exist
    pairs,  # [BLOCK_M]: pair id of each row (read where row_ok)
    out_w_ptr,  # [P] fp32: router weight of each pair on the expert's output (SCALE_OUTPUT)
    b2_ptr,  # [E, H] compute dtype, row stride stride_b2e (HAS_BIAS)
    expert,  # int64
    offs_n,  # [BLOCK_N] output columns of H
    hidden,
    inter,
    num_experts,
    stride_b2e,
    step_w,  # elements to advance w_ptrs by one K tile
    SCALE_OUTPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
):
    """Down layer: (h @ w2[e].T [+ b2[e]]) [* router weight] for the tile, in fp32, [BLOCK_M, BLOCK_N]."""
    acc, _ = expert_tile(
        a_ptrs,
        w_ptrs,
        row_ok,
        0,  # up_offset: one weight operand
        inter,
        BLOCK_K,
        step_w,
        False,  # GATED
        BLOCK_M,
        BLOCK_N,
        BLOCK_K,
        EVEN_K,
        UPCAST_BF16,
        FP32_IEEE,
    )
    return expert_output(
        acc,
        out_w_ptr,
        pairs,
        row_ok,
        b2_ptr,
        expert,
        offs_n,
        offs_n < hidden,
        num_experts,
        stride_b2e,
        SCALE_OUTPUT,
        HAS_BIAS,
        HAS_SHARED,
    )
