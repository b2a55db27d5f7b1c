"""Round-to-nearest-even for fp32 -> bf16 stores under the Triton interpreter.

Known bug (Triton 3.9's interpreter): `x.to(tl.bfloat16)` truncates the fp32 mantissa instead of
rounding to nearest even (and fp_downcast_rounding="rtne" does not fix it), which doubles the
rounding error of every bf16 output on the CPU. Compiled GPU code rounds correctly. Launchers
pass ROUND_BF16=True exactly when the probe below finds the bug and the output is bf16; kernels
then round in fp32 bits first (`round_bf16_rtne`), so the truncating cast becomes exact.
Detected by a probe, not a version check, like the bf16 dot bug in interpreter.py.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from moebench.kernels.interpreter import interpreting


@triton.jit
def round_bf16_rtne(x):
    """x: fp32 tensor -> fp32 tensor holding the bf16 value nearest to x (ties to even)."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return ((bits >> 16) << 16).to(tl.float32, bitcast=True)


@triton.jit
def to_output(x, ROUND_BF16: tl.constexpr):
    """fp32 values about to be stored: rounded first when the interpreter would truncate."""
    if ROUND_BF16:
        x = round_bf16_rtne(x)
    return x


@triton.jit
def _probe_cast_kernel(x_ptr, y_ptr, N: tl.constexpr):
    # x_ptr: [N] fp32;  y_ptr: [N] bf16
    offs = tl.arange(0, N)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs).to(tl.bfloat16))


@functools.cache
def bf16_cast_truncates() -> bool:
    """True when this interpreter's fp32 -> bf16 cast does not round to nearest (Triton 3.9's)."""
    if not interpreting():
        return False
    n = 64
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    y = torch.empty(n, dtype=torch.bfloat16)
    _probe_cast_kernel[(1,)](x, y, N=n)
    return not torch.equal(y, x.to(torch.bfloat16))


def round_flags(dtype: torch.dtype) -> dict[str, bool]:
    """constexpr flags for `to_output` for outputs of `dtype`."""
    return {"ROUND_BF16": dtype == torch.bfloat16 and bf16_cast_truncates()}
