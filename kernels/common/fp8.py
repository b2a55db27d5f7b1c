"""FP8 (e4m3) helpers for quantised kernels: round-to-nearest-even e4m3 values, and the per-token-group
activation quantisation of fp8-block128 (DeepSeek-V3's `act_quant`: scale = amax(group) / 448, codes
e4m3(x / scale); moebench.quant.fp8 is the torch definition the parity reference uses).

Known interpreter bug (Triton 3.9, TRITON_INTERPRET=1): the fp32 -> float8e4nv cast does not round to
nearest even (about 2.5% of random values land on the neighbouring code). Launchers pass ROUND_FP8=True
under the interpreter and `round_e4m3_rtne` first rounds in fp32, so the cast that follows is exact;
compiled GPU code (cvt.rn.satfinite) never takes that branch.
"""

import triton
import triton.language as tl

E4M3_MAX: tl.constexpr = tl.constexpr(448.0)
_SUBNORMAL_MAGIC: tl.constexpr = tl.constexpr(24576.0)  # 1.5 * 2**14: x + M - M rounds x to a multiple of 2**-9


@triton.jit
def round_e4m3_rtne(x):
    """x: fp32 tensor in [-448, 448] -> fp32 tensor holding the nearest e4m3 value (ties to even)."""
    bits = x.to(tl.uint32, bitcast=True)
    # normals (|x| >= 2**-6): keep 3 mantissa bits, round to nearest even on the fp32 bit pattern
    normal = (((bits + 0x7FFFF + ((bits >> 20) & 1)) >> 20) << 20).to(tl.float32, bitcast=True)
    # subnormals (|x| < 2**-6): multiples of 2**-9, rounded to nearest even by the fp32 adder
    sub = (x + _SUBNORMAL_MAGIC) - _SUBNORMAL_MAGIC
    return tl.where(tl.abs(x) < 0.015625, sub, normal)


@triton.jit
def act_quant_kernel(
    x_ptr,  # [R, K] fp32/fp16/bf16, strides (stride_xr, 1)
    q_ptr,  # [R, K] float8_e4m3fn out, strides (stride_qr, 1)
    s_ptr,  # [R, ceil(K/GROUP)] fp32 out: one scale per row per group, strides (stride_sr, 1)
    rows_ptr,  # [R] int32: pair id of each row (ROW_CHECK only: rows with id >= num_valid are skipped)
    num_valid,
    K,
    stride_xr,
    stride_qr,
    stride_sr,
    ROW_CHECK: tl.constexpr,
    GROUP: tl.constexpr,  # elements sharing one scale (a power of two)
    ROUND_FP8: tl.constexpr,
):
    """One program per (row, group): scale = amax / 448 (1 for an all-zero group), codes e4m3(x / scale)."""
    row = tl.program_id(0).to(tl.int64)
    group = tl.program_id(1)
    if ROW_CHECK and tl.load(rows_ptr + row) >= num_valid:
        return
    offs = group * GROUP + tl.arange(0, GROUP)
    ok = offs < K
    x = tl.load(x_ptr + row * stride_xr + offs, mask=ok, other=0.0).to(tl.float32)
    # IEEE divisions (div_rn: compiled `/` is an approximate division on NVIDIA GPUs), so the codes and scales
    # are bit for bit moebench.quant.fp8's, which the reference computes with
    scale = tl.math.div_rn(tl.max(tl.abs(x), axis=0), E4M3_MAX)
    scale = tl.where(scale > 0.0, scale, 1.0)
    v = tl.minimum(tl.maximum(tl.math.div_rn(x, scale), -E4M3_MAX), E4M3_MAX)
    if ROUND_FP8:
        v = round_e4m3_rtne(v)
    tl.store(q_ptr + row * stride_qr + offs, v.to(tl.float8e4nv), mask=ok)
    tl.store(s_ptr + row * stride_sr + group, scale)
