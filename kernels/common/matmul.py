"""`mma`: the one tile product every moebench kernel uses, with the interpreter workaround.

Known bug (Triton 3.9's interpreter, TRITON_INTERPRET=1): `tl.dot` on bf16 operands multiplies the
raw uint16 bit patterns and returns garbage; fp16 and fp32 dots are right. Launchers pass
UPCAST_BF16=True exactly when the probe in `moebench.kernels.common.interpreter` finds the bug, and the
dot then runs on fp32 copies of the tiles (exact for bf16 values). Compiled GPU code never takes
that branch. fp32 operands use IEEE precision (no TF32) so fp32 parity stays at fp32 accuracy.
"""

import triton
import triton.language as tl


@triton.jit
def mma(a, b, acc, UPCAST_BF16: tl.constexpr, FP32_IEEE: tl.constexpr):
    """acc += a @ b   (a: [BM, BK], b: [BK, BN], acc: [BM, BN] fp32)."""
    if UPCAST_BF16:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif FP32_IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc
