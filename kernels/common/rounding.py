"""`cast_for_store`: the cast every moebench kernel applies to fp32 values it stores.

Works around the Triton interpreter's truncating fp32 -> bf16 cast (see
`moebench.kernels.common.interpreter`: the bug, its probe, and `store_flags`, which launchers pass).
With ROUND_BF16 set, values bound for a bf16 output are first rounded to nearest even in their
fp32 bits (`round_bf16_rtne`), so the interpreter's truncating cast that follows is exact.
Launchers set ROUND_BF16 only under an interpreter with the bug: compiled GPU code never takes
the branch and compiles to the plain cast.
"""

import triton
import triton.language as tl


@triton.jit
def round_bf16_rtne(x):
    """x: fp32 tensor -> fp32 tensor holding the bf16 value nearest to x (ties to even); NaN stays NaN."""
    bits = x.to(tl.uint32, bitcast=True)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    # NaN: adding could carry into the exponent or wrap; set the quiet bit so truncation keeps a NaN
    quiet_nan = bits | 0x400000
    return tl.where(x != x, quiet_nan, rounded).to(tl.float32, bitcast=True)


@triton.jit
def cast_for_store(x, out_ptr, ROUND_BF16: tl.constexpr):
    """x: fp32 tensor -> x in out_ptr's element type, rounded to nearest even for bf16 outputs.

    ROUND_BF16: from `store_flags(dtype)`; harmless for a non-bf16 out_ptr (checked at compile time).
    """
    if ROUND_BF16 and out_ptr.dtype.element_ty == tl.bfloat16:
        x = round_bf16_rtne(x)
    return x.to(out_ptr.dtype.element_ty)
