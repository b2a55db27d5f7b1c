"""Parity tolerances: the one table, keyed by dtype.

An output passes when every element is finite and written, and its relative L2 error against
the fp64 reference, ||out - ref|| / ||ref||, is at most the table's value for its dtype.
Why these values: fp32 kernels run full fp32 (no TF32) so their error is ~1e-6; fp16/bf16 round
the inputs, the I-wide activation and the output to 11/8 significant bits (unit roundoff 4.9e-4 /
3.9e-3), which gives rel. L2 errors of ~1e-3 (fp16) and ~5e-3 (bf16); the table leaves ~3x margin.
"""

from __future__ import annotations

import torch

# dtype -> max relative L2 error of the output against the fp64 reference
REL_L2_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 1e-4,
    torch.float16: 4e-3,
    torch.bfloat16: 2e-2,
}

# gradients accumulate over more terms (sums over tokens for weight gradients)
GRAD_REL_L2_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 2e-4,
    torch.float16: 8e-3,
    torch.bfloat16: 4e-2,
}


def tolerance(dtype: torch.dtype, *, grad: bool = False) -> float:
    table = GRAD_REL_L2_TOLERANCE if grad else REL_L2_TOLERANCE
    if dtype not in table:
        raise KeyError(f"no tolerance for dtype {dtype}")
    return table[dtype]
