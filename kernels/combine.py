"""Deterministic combine: out[t] = sum over slots s = 0..k-1 of y[t*k + s], in fp32, in slot order.

The router weights are already applied (down kernels' epilogue). One program per (token, block of
H); each output element is written exactly once, no atomics, so the result is bitwise repeatable.
"""

import triton
import triton.language as tl

from moebench.kernels.rounding import cast_for_store


@triton.jit
def combine_kernel(
    y_ptr,  # [T*k, H] compute dtype, row = pair id (t*k + s), unit column stride
    out_ptr,  # [T, H] compute dtype out, unit column stride
    hidden,
    top_k,
    stride_yt,
    stride_ot,
    BLOCK_H: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ok = offs < hidden
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for slot in range(0, top_k):
        row = token * top_k + slot
        acc += tl.load(y_ptr + row * stride_yt + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + token * stride_ot + offs, cast_for_store(acc, out_ptr, ROUND_BF16), mask=ok)
