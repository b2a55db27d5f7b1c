"""The one check for the Triton interpreter, and its two bf16 bugs, found by probes, not version
checks: each workaround switches itself off once an interpreter gets that operation right.

`interpreting()` is what the registry (availability), the tuning cache (device key) and
compile_check read. This module imports no triton: the registry decides availability without it;
the probe kernels (moebench.kernels.common.probes) are imported only when a probe runs.

1. bf16 `tl.dot` (Triton 3.9's interpreter multiplies the raw uint16 bit patterns): launchers pass
   `**dot_flags(dtype)` and kernels multiply tiles through `moebench.kernels.common.matmul.mma`,
   which then runs the dot on fp32 copies (exact for bf16 values).
2. fp32 -> bf16 cast (Triton 3.9's interpreter truncates the mantissa instead of rounding to
   nearest even, and fp_downcast_rounding="rtne" does not help), which doubles the rounding error
   of every bf16 output on the CPU. Launchers pass `**store_flags(dtype)` for the dtype a kernel
   stores, and kernels cast at their store sites through
   `moebench.kernels.common.rounding.cast_for_store`, which then rounds in fp32 bits first, so the
   truncating cast becomes exact.

Both flags are False whenever TRITON_INTERPRET is off: compiled GPU code never takes either branch.
"""

from __future__ import annotations

import functools
import os

import torch


def interpreting() -> bool:
    """True when TRITON_INTERPRET is set (to anything but "" or "0"): Triton kernels then run on
    CPU tensors in the interpreter, and compiled kernels are not available."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def kernel_device() -> str:
    """Where Triton kernels run in this process: "cuda" (compiled kernels on CUDA tensors) when a GPU
    is present and the interpreter is off, else "cpu" (the interpreter, on CPU tensors). Tests run
    every Triton kernel on this device, so a test means the same on a CPU and a GPU machine."""
    return "cuda" if torch.cuda.is_available() and not interpreting() else "cpu"


@functools.cache
def bf16_dot_broken() -> bool:
    """True when this interpreter's bf16 tl.dot is wrong (Triton 3.9's is)."""
    if not interpreting():
        return False
    from moebench.kernels.common.probes import probe_dot_kernel

    n = 16
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    c = torch.empty(n, n, dtype=torch.float32)
    probe_dot_kernel[(1,)](a, b, c, N=n)
    expected = a.float() @ b.float()
    return not torch.allclose(c, expected, rtol=1e-3, atol=1e-3)


@functools.cache
def bf16_cast_truncates() -> bool:
    """True when this interpreter's fp32 -> bf16 cast does not round to nearest even (Triton 3.9's).

    64 random fp32 values: a truncating cast differs from torch's round-to-nearest-even on about
    half of them, so the probe cannot miss the bug by chance."""
    if not interpreting():
        return False
    from moebench.kernels.common.probes import probe_cast_kernel

    n = 64
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    y = torch.empty(n, dtype=torch.bfloat16)
    probe_cast_kernel[(1,)](x, y, N=n)
    return not torch.equal(y, x.to(torch.bfloat16))


def dot_flags(dtype: torch.dtype) -> dict[str, bool]:
    """constexpr flags for `mma` for operands of `dtype`."""
    return {
        "UPCAST_BF16": dtype == torch.bfloat16 and bf16_dot_broken(),
        "FP32_IEEE": dtype == torch.float32,
    }


def store_flags(dtype: torch.dtype) -> dict[str, bool]:
    """constexpr flag for `cast_for_store` in a kernel that stores fp32 values as `dtype`."""
    return {"ROUND_BF16": dtype == torch.bfloat16 and bf16_cast_truncates()}
