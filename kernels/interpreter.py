"""Detects the Triton interpreter and its bf16 `tl.dot` bug (see matmul.py), by a probe, not a
version check: the workaround switches itself off once an interpreter computes bf16 dots right."""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _probe_dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
    # a_ptr, b_ptr: [N, N] bf16 row-major;  c_ptr: [N, N] fp32
    offs = tl.arange(0, N)
    a = tl.load(a_ptr + offs[:, None] * N + offs[None, :])
    b = tl.load(b_ptr + offs[:, None] * N + offs[None, :])
    tl.store(c_ptr + offs[:, None] * N + offs[None, :], tl.dot(a, b))


@functools.cache
def bf16_dot_broken() -> bool:
    """True when this interpreter's bf16 tl.dot is wrong (Triton 3.9's is)."""
    if not interpreting():
        return False
    n = 16
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, n, generator=gen).to(torch.bfloat16)
    c = torch.empty(n, n, dtype=torch.float32)
    _probe_dot_kernel[(1,)](a, b, c, N=n)
    expected = a.float() @ b.float()
    return not torch.allclose(c, expected, rtol=1e-3, atol=1e-3)


def dot_flags(dtype: torch.dtype) -> dict[str, bool]:
    """constexpr flags for `mma` for operands of `dtype`."""
    return {
        "UPCAST_BF16": dtype == torch.bfloat16 and bf16_dot_broken(),
        "FP32_IEEE": dtype == torch.float32,
    }
