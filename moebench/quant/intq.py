"""int4 / int8 weight-only formats with one scale (and optionally one zero point) per group of K elements.

Codes are unsigned, u in [0, 2^bits - 1], and w = (u - z) * scale for the group (groups of `g`
consecutive elements along K, g a power of two, 128 by default):
  symmetric:  scale = amax / (2^(bits-1) - 1), z = 2^(bits-1) (8 or 128) for every group and not
              stored; codes use [1, 2^bits - 1] (u = 0, i.e. -2^(bits-1), only when a rounded
              fp16/bf16 scale needs it).
  asymmetric: the group's range is widened to include 0, [lo, hi] = [min(w, 0), max(w, 0)];
              scale = (hi - lo) / (2^bits - 1), z = round(-lo / scale), so 0 is exactly a code.
The scale is rounded to its storage dtype (fp32 by default) before the codes are computed against it;
rounding is to nearest, ties to even. An all-zero group gets scale 1 and the code of 0.
If K is not a multiple of g, the last group is partial (its statistics cover the elements that exist).
Quantisation arithmetic is fp32.

Storage (the layout ONNX Runtime's QMoE reads with weights_prepacked=0):
  data   int4: uint8 [..., N, ceil(K/2)], element 2j in the low nibble of byte j, 2j+1 in the high
         nibble (an odd K pads the last byte with the code of 0); int8: uint8 [..., N, K]
  scale  [..., N, ceil(K/g)] in the scale dtype
  zero   asymmetric only: uint8 [..., N, ceil(ceil(K/g)/2)] for int4 (two zero points per byte, same
         nibble order, an odd group count padded with 0), [..., N, ceil(K/g)] for int8

How this maps onto `com.microsoft.QMoE` (onnxruntime 1.32 schema; quant_type='int', block_size=g,
expert_weight_bits=bits, weights_prepacked=0): fcN_experts_weights = data, fcN_scales = scale,
fcN_zero_points = zero, omitted for symmetric formats because QMoE's default zero point is the
same 2^(bits-1). fc1 is our w1 [E, G*I, H] and fc2 our w2 [E, H, I]; for swiglu the CPU provider
wants gate/up rows interleaved (swiglu_fusion=1), a row permutation applied alike to data, scale
and zero. The schema asks for K % g == 0 and g a power of two >= 16.
"""

from __future__ import annotations

import torch

from moebench.quant.blocks import (
    block_amax,
    block_min_max,
    block_view,
    cdiv,
    expand_blocks,
    pack_nibbles,
    unpack_nibbles,
)
from moebench.quant.formats import QuantFormat


def quantize(w: torch.Tensor, fmt: QuantFormat) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """[..., N, K] float -> (codes, scale, zero or None) in the layout above."""
    g, bits = fmt.group_size, fmt.bits
    levels = 2**bits - 1
    w = w.float()
    if fmt.symmetric:
        scale = _stored_scale(block_amax(w, 1, g) / (2 ** (bits - 1) - 1), fmt)
        zero = torch.full_like(scale, 2 ** (bits - 1), dtype=torch.float32)
    else:
        lo, hi = block_min_max(w, 1, g)
        scale = _stored_scale((hi - lo) / levels, fmt)
        zero = (-lo / scale.float()).round().clamp(0, levels)
    blocks = block_view(w, 1, g).squeeze(-3)  # [..., N, G, g], zero-padded past K
    codes = ((blocks / scale.float()[..., None]).round() + zero[..., None]).clamp(0, levels).to(torch.uint8)
    codes = codes.flatten(-2)  # [..., N, G*g]; past K these are codes of 0
    zero_codes = None if fmt.symmetric else zero.to(torch.uint8)
    if bits == 4:
        data = pack_nibbles(codes[..., : 2 * cdiv(w.shape[-1], 2)])
        zero_codes = None if zero_codes is None else pack_nibbles(zero_codes)
    else:
        data = codes[..., : w.shape[-1]].contiguous()
    return data, scale, zero_codes


def _stored_scale(scale: torch.Tensor, fmt: QuantFormat) -> torch.Tensor:
    """The scale rounded to its storage dtype; 1 for all-zero groups (no division by zero)."""
    scale = scale.to(fmt.scale_dtype)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def codes_and_zeros(
    data: torch.Tensor, zero: torch.Tensor | None, fmt: QuantFormat, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpacked codes [..., N, K] and zero points [..., N, ceil(K/g)] (uint8)."""
    groups = cdiv(k, fmt.group_size)
    codes = unpack_nibbles(data, k) if fmt.bits == 4 else data
    if zero is None:
        zero = torch.full((*data.shape[:-1], groups), 2 ** (fmt.bits - 1), dtype=torch.uint8, device=data.device)
    elif fmt.bits == 4:
        zero = unpack_nibbles(zero, groups)
    return codes, zero


def dequantize(
    data: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, fmt: QuantFormat, k: int, dtype: torch.dtype
) -> torch.Tensor:
    """(code - zero) * scale, computed in fp64 for an fp64 result (exact) and in fp32 otherwise."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    codes, zero = codes_and_zeros(data, zero, fmt, k)
    n = codes.shape[-2]
    centred = codes.to(work) - expand_blocks(zero.to(work), *fmt.block, n, k)
    return (centred * expand_blocks(scale.to(work), *fmt.block, n, k)).to(dtype)
