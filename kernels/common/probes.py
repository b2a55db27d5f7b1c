"""The two probe kernels of `moebench.kernels.common.interpreter` (imported only when probing)."""

import triton
import triton.language as tl


@triton.jit
def probe_dot_kernel(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
    # a_ptr, b_ptr: [N, N] bf16 row-major;  c_ptr: [N, N] fp32
    offs = tl.arange(0, N)
    a = tl.load(a_ptr + offs[:, None] * N + offs[None, :])
    b = tl.load(b_ptr + offs[:, None] * N + offs[None, :])
    tl.store(c_ptr + offs[:, None] * N + offs[None, :], tl.dot(a, b))


@triton.jit
def probe_cast_kernel(x_ptr, y_ptr, N: tl.constexpr):
    # x_ptr: [N] fp32;  y_ptr: [N] bf16
    offs = tl.arange(0, N)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs).to(tl.bfloat16))
