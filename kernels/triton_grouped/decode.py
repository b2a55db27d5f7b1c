"""Decode path of the MoE FFN: few pairs, no sorting, no padding, each weight byte read once.

Grid (S, N blocks). Program s works for ONE expert e and one block of BLOCK_N output columns:
  * BY_EXPERT=False (used when T*k <= E): e = topk_ids[s], and the program runs only if pair s is
    the first pair routed to e (its "leader"); later pairs of e exit at once. S = T*k.
  * BY_EXPERT=True (T*k > E): e = s, S = E; a program whose expert got no pair does no work.
It streams its expert's weight slab [BLOCK_N, K] once through the K loop and multiplies it with
all pairs of e at once: the A tile holds BLOCK_P pairs (rows of other experts masked to zero), so
the tensor-core product stays legal (M >= 16) while memory traffic is the weights alone. More
than BLOCK_P pairs are handled in further passes (correct, but then weights are re-read: the
launcher uses this path for small T*k only). The expert options live in the shared tiles' epilogues
(see moebench.kernels.triton_grouped.gemm); experts >= num_experts are appended shared-expert chunks.
"""

import triton
import triton.language as tl

from moebench.kernels.common.rounding import cast_for_store
from moebench.kernels.triton_grouped.tiles import down_tile, expert_weight_ptrs, gate_up_tile


@triton.jit
def pairs_of_expert(topk_ids_ptr, p0, end, expert, BLOCK_P: tl.constexpr):
    """Pairs p0 .. p0 + BLOCK_P - 1 (those < end) -> (their ids, which of them are routed to `expert`)."""
    pairs = p0 + tl.arange(0, BLOCK_P)
    ids = tl.load(topk_ids_ptr + pairs, mask=pairs < end, other=-1)
    return pairs, ids == expert


@triton.jit
def program_expert(topk_ids_ptr, slot, BY_EXPERT: tl.constexpr, BLOCK_P: tl.constexpr):
    """The expert program `slot` works for, or -1 when another program already does (see above)."""
    if BY_EXPERT:
        expert = slot
    else:
        expert = tl.load(topk_ids_ptr + slot).to(tl.int32)
        earlier = 0
        for p0 in range(0, slot, BLOCK_P):
            _, mine = pairs_of_expert(topk_ids_ptr, p0, slot, expert, BLOCK_P)
            earlier += tl.sum(mine.to(tl.int32), axis=0)
        expert = tl.where(earlier > 0, -1, expert)
    return expert


@triton.jit
def decode_gate_up_kernel(
    x_ptr,  # [T, H] compute dtype, strides (stride_xt, stride_xh)
    w1_ptr,  # [E, G*I, H] compute dtype, strides (stride_we, stride_wn, stride_wk)
    h_ptr,  # [P, I] compute dtype out, row = pair id, unit column stride
    topk_ids_ptr,  # [P] int64: expert of each pair
    in_w_ptr,  # [P] fp32: router weight of each pair on the expert's input (SCALE_INPUT)
    b1_ptr,  # [E, G*I] compute dtype, row stride stride_b1e, unit column stride (HAS_BIAS)
    shared_w1_ptr,  # [S', G*I, H] compute dtype: shared-expert chunks, w1's inner strides (HAS_SHARED)
    num_pairs,
    top_k,
    hidden,
    inter,
    num_experts,
    stride_xt,
    stride_xh,
    stride_we,
    stride_wn,
    stride_wk,
    stride_ht,
    stride_b1e,
    stride_se,
    BY_EXPERT: tl.constexpr,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr,
    SWIGLU_LIMIT: tl.constexpr,
    SWIGLU_UP_OFFSET: tl.constexpr,
    SCALE_INPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    expert = program_expert(topk_ids_ptr, tl.program_id(0), BY_EXPERT, BLOCK_P)
    if expert < 0:  # another program serves this expert (here, not in program_expert: helpers cannot return)
        return
    expert_i64 = expert.to(tl.int64)
    offs_n, offs_k, w_ptrs = expert_weight_ptrs(
        w1_ptr, shared_w1_ptr, expert_i64, tl.program_id(1), inter, num_experts, stride_we, stride_se, stride_wn,
        stride_wk, HAS_SHARED, BLOCK_N, BLOCK_K,
    )  # fmt: skip
    for p0 in range(0, num_pairs, BLOCK_P):
        pairs, mine = pairs_of_expert(topk_ids_ptr, p0, num_pairs, expert, BLOCK_P)
        if tl.sum(mine.to(tl.int32), axis=0) > 0:
            tokens = (pairs // top_k).to(tl.int64)
            a_ptrs = x_ptr + tokens[:, None] * stride_xt + offs_k[None, :] * stride_xh
            h = gate_up_tile(
                a_ptrs, w_ptrs, mine, pairs, in_w_ptr, b1_ptr, expert_i64, offs_n,
                inter * stride_wn, hidden, inter, num_experts, stride_b1e, BLOCK_K * stride_xh, BLOCK_K * stride_wk,
                ACTIVATION, SWIGLU_ALPHA, SWIGLU_LIMIT, SWIGLU_UP_OFFSET, SCALE_INPUT, HAS_BIAS, HAS_SHARED,
                BLOCK_P, BLOCK_N, BLOCK_K, EVEN_K, UPCAST_BF16, FP32_IEEE,
            )  # fmt: skip
            h_ptrs = h_ptr + pairs.to(tl.int64)[:, None] * stride_ht + offs_n[None, :]
            tl.store(
                h_ptrs,
                cast_for_store(h, h_ptr, ROUND_BF16),
                mask=mine[:, None] & (offs_n < inter)[None, :],
            )


@triton.jit
def decode_down_kernel(
    h_ptr,  # [P, I] compute dtype, row = pair id, unit column stride
    w2_ptr,  # [E, H, I] compute dtype, strides (stride_we, stride_wn, stride_wk)
    y_ptr,  # [P, H] compute dtype out, row = pair id (or out [T, H] when k == 1), unit column stride
    topk_ids_ptr,  # [P] int64
    out_w_ptr,  # [P] fp32: router weight of each pair on the expert's output (SCALE_OUTPUT)
    b2_ptr,  # [E, H] compute dtype, row stride stride_b2e, unit column stride (HAS_BIAS)
    shared_w2_ptr,  # [S', H, I] compute dtype: shared-expert chunks, w2's inner strides (HAS_SHARED)
    num_pairs,
    hidden,
    inter,
    num_experts,
    stride_ht,
    stride_we,
    stride_wn,
    stride_wk,
    stride_yt,
    stride_b2e,
    stride_se,
    BY_EXPERT: tl.constexpr,
    SCALE_OUTPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST_BF16: tl.constexpr,
    FP32_IEEE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    expert = program_expert(topk_ids_ptr, tl.program_id(0), BY_EXPERT, BLOCK_P)
    if expert < 0:  # another program serves this expert (here, not in program_expert: helpers cannot return)
        return
    expert_i64 = expert.to(tl.int64)
    offs_n, offs_k, w_ptrs = expert_weight_ptrs(
        w2_ptr, shared_w2_ptr, expert_i64, tl.program_id(1), hidden, num_experts, stride_we, stride_se, stride_wn,
        stride_wk, HAS_SHARED, BLOCK_N, BLOCK_K,
    )  # fmt: skip
    for p0 in range(0, num_pairs, BLOCK_P):
        pairs, mine = pairs_of_expert(topk_ids_ptr, p0, num_pairs, expert, BLOCK_P)
        if tl.sum(mine.to(tl.int32), axis=0) > 0:
            rows = pairs.to(tl.int64)
            a_ptrs = h_ptr + rows[:, None] * stride_ht + offs_k[None, :]
            y = down_tile(
                a_ptrs, w_ptrs, mine, pairs, out_w_ptr, b2_ptr, expert_i64, offs_n,
                hidden, inter, num_experts, stride_b2e, BLOCK_K * stride_wk,
                SCALE_OUTPUT, HAS_BIAS, HAS_SHARED, BLOCK_P, BLOCK_N, BLOCK_K, EVEN_K, UPCAST_BF16, FP32_IEEE,
            )  # fmt: skip
            y_ptrs = y_ptr + rows[:, None] * stride_yt + offs_n[None, :]
            tl.store(
                y_ptrs,
                cast_for_store(y, y_ptr, ROUND_BF16),
                mask=mine[:, None] & (offs_n < hidden)[None, :],
            )
