"""The expert options in the epilogues of both layers, for every moebench kernel (@triton.jit, inlined).

  first layer   pre = [w_in *] (x @ W1[e].T) [+ b1[e]]      then the activation (common.activation)
  second layer  y   = ((h @ W2[e].T) [+ b2[e]]) [* w_out]

w_in / w_out are per-pair router weights ([P] fp32): the router weight scales the expert's input
(Llama-4, SCALE_INPUT; the first layer is linear, so scaling its product is scaling x) or its output
(SCALE_OUTPUT, the default). Biases b1 [E, G*I] and b2 [E, H] (gpt-oss) are added in fp32 (HAS_BIAS).

Shared experts run as extra experts appended to the routed ones (moebench.impls.common.pairs): expert
ids >= num_experts are chunks of the shared experts, whose weights live in a second tensor with the
same inner strides (HAS_SHARED; `expert_base` picks the tensor), and which have no biases. Every switch
is a constexpr, so a plain layer compiles to the code it had before these options.
"""

import triton
import triton.language as tl


@triton.jit
def expert_base(
    w_ptr,  # [E, rows, cols] routed experts' weights, expert stride stride_we
    shared_ptr,  # [S', rows, cols] appended shared-expert chunks, same inner strides, expert stride stride_se
    expert,  # int64 expert id: < num_experts routed, else chunk expert - num_experts of shared_ptr
    num_experts,
    stride_we,
    stride_se,
    HAS_SHARED: tl.constexpr,
):
    """Pointer to the first element of `expert`'s weight matrix."""
    if HAS_SHARED:
        if expert < num_experts:
            base = w_ptr + expert * stride_we
        else:
            base = shared_ptr + (expert - num_experts) * stride_se
    else:
        base = w_ptr + expert * stride_we
    return base


@triton.jit
def _expert_bias(bias_ptr, expert, cols, col_ok, num_experts, stride_be, HAS_SHARED: tl.constexpr):
    """[BN] fp32: bias_ptr[expert * stride_be + cols], 0 where not col_ok and for shared chunks."""
    mask = col_ok
    if HAS_SHARED:
        mask = mask & ((cols * 0 + expert) < num_experts)  # a [BN] mask: a scalar bool here breaks the interpreter
    return tl.load(bias_ptr + expert * stride_be + cols, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def pre_activation(
    gate,  # [BM, BN] fp32: x @ W1[e].T, gate columns (all of the first layer when not GATED)
    up,  # [BM, BN] fp32: up columns (GATED only)
    in_w_ptr,  # [P] fp32: router weight of each pair on the expert's input (SCALE_INPUT)
    pairs,  # [BM] pair id of each row (read where row_ok)
    row_ok,  # [BM] bool
    b1_ptr,  # [E, G*I] spec dtype, row stride stride_b1e, unit column stride (HAS_BIAS)
    expert,  # int64
    cols,  # [BN] columns of I
    col_ok,  # [BN] bool: cols < I
    inter,
    num_experts,
    stride_b1e,
    GATED: tl.constexpr,
    SCALE_INPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
):
    """(gate, up) pre-activations: w_in * product + b1, in fp32."""
    if SCALE_INPUT:
        w = tl.load(in_w_ptr + pairs, mask=row_ok, other=0.0)[:, None]
        gate = gate * w
        if GATED:
            up = up * w
    if HAS_BIAS:
        gate = gate + _expert_bias(b1_ptr, expert, cols, col_ok, num_experts, stride_b1e, HAS_SHARED)[None, :]
        if GATED:
            up = up + _expert_bias(b1_ptr + inter, expert, cols, col_ok, num_experts, stride_b1e, HAS_SHARED)[None, :]
    return gate, up


@triton.jit
def expert_output(
    acc,  # [BM, BN] fp32: h @ W2[e].T
    out_w_ptr,  # [P] fp32: router weight of each pair on the expert's output (SCALE_OUTPUT)
    pairs,  # [BM] pair id of each row (read where row_ok)
    row_ok,  # [BM] bool
    b2_ptr,  # [E, H] spec dtype, row stride stride_b2e, unit column stride (HAS_BIAS)
    expert,  # int64
    cols,  # [BN] columns of H
    col_ok,  # [BN] bool: cols < H
    num_experts,
    stride_b2e,
    SCALE_OUTPUT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_SHARED: tl.constexpr,
):
    """(acc + b2) * w_out in fp32, [BM, BN]."""
    if HAS_BIAS:
        acc = acc + _expert_bias(b2_ptr, expert, cols, col_ok, num_experts, stride_b2e, HAS_SHARED)[None, :]
    if SCALE_OUTPUT:
        acc = acc * tl.load(out_w_ptr + pairs, mask=row_ok, other=0.0)[:, None]
    return acc
