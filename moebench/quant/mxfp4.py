"""mxfp4: OCP Microscaling FP4 weights, as gpt-oss ships its experts.

Each run of 32 consecutive elements along K shares one scale X = 2^e stored as an E8M0 byte
(e + 127; 0xFF is NaN), and each element is an E2M1 code: sign bit 3, then a magnitude from
0, 0.5, 1, 1.5, 2, 3, 4, 6 (codes 0..7; code | 8 is the negative; 8 is -0). w = value(code) * X.

Quantisation follows the OCP MX v1.0 spec's conversion: e = floor(log2(amax of the block)) - 2
(2 = the exponent of E2M1's largest value, 6 = 1.5 * 2^2), clamped to [-127, 127] (an all-zero block
gets e = -127); then each w / X is rounded to the nearest E2M1 value, ties to the even code, and
magnitudes above 6 saturate to 6 (with this scale w / X can reach just under 8). Other quantisers
choose e so that nothing saturates (e = ceil(log2(amax / 6))); any such checkpoint still
dequantises exactly with `dequantize` here.

Storage: data uint8 [..., N, K/2], element 2j in the low nibble of byte j, 2j+1 in the high nibble;
scale uint8 [..., N, K/32]. gpt-oss's checkpoint stores the same bytes as `*_blocks` uint8
[E, N, K/32, 16] and `*_scales` uint8 [E, N, K/32] (transformers, src/transformers/integrations/
mxfp4.py, `convert_moe_packed_tensors`: low nibble -> even element, high nibble -> odd element,
exponent = scale - 127), so `gpt_oss_blocks` / `from_gpt_oss_blocks` are reshapes. K must be a
multiple of 32 (gpt-oss's layout has no partial blocks).
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.quant.blocks import block_amax, expand_blocks, pack_nibbles, unpack_nibbles
from moebench.quant.formats import MXFP4, QuantFormat

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E2M1_EMAX = 2
E8M0_BIAS = 127
E8M0_NAN = 0xFF
# Midpoints between neighbouring E2M1 magnitudes, and whether a value exactly on one goes up
# (the upper neighbour has the even code) or stays down.
_MIDPOINTS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True), (2.5, False), (3.5, True), (5.0, False))


def e2m1_encode(v: torch.Tensor) -> torch.Tensor:
    """Values -> E2M1 codes (uint8 0..15): nearest magnitude, ties to even, saturating at 6; sign kept (-0.1 -> -0)."""
    mag = v.abs()
    code = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
    for midpoint, tie_up in _MIDPOINTS:
        code += (mag >= midpoint) if tie_up else (mag > midpoint)
    return code | (torch.signbit(v).to(torch.uint8) << 3)


def e2m1_decode(codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """E2M1 codes (uint8 0..15) -> values (exact in any float dtype)."""
    table = torch.tensor(E2M1_VALUES + tuple(-v for v in E2M1_VALUES), dtype=dtype, device=codes.device)
    return table[codes.long()]


def e8m0_encode(exponent: torch.Tensor) -> torch.Tensor:
    """Integer exponents e in [-127, 127] -> E8M0 bytes e + 127; raises for exponents outside."""
    if exponent.numel() and (int(exponent.min()) < -E8M0_BIAS or int(exponent.max()) > E8M0_BIAS):
        raise MoEInputError(
            f"exponent: expected values in [-127, 127], got [{int(exponent.min())}, {int(exponent.max())}]"
        )
    return (exponent.to(torch.int32) + E8M0_BIAS).to(torch.uint8)


def e8m0_decode(codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """E8M0 bytes -> 2^(code - 127), NaN for 0xFF (exact in fp32, bf16 and fp64, 2^-127 as a subnormal)."""
    exponent = codes.to(torch.float64) - E8M0_BIAS
    scale = torch.where(codes == E8M0_NAN, torch.nan, torch.exp2(exponent))
    return scale.to(dtype)


def quantize(w: torch.Tensor, fmt: QuantFormat = MXFP4) -> tuple[torch.Tensor, torch.Tensor, None]:
    """[..., N, K] float (K % 32 == 0) -> (packed codes uint8 [..., N, K/2], E8M0 scales uint8 [..., N, K/32])."""
    rows, cols = fmt.block
    amax = block_amax(w.float(), rows, cols)
    _, e = torch.frexp(amax)  # amax = m * 2^e with m in [0.5, 1): floor(log2(amax)) = e - 1
    exponent = torch.where(amax > 0, e - 1 - E2M1_EMAX, -E8M0_BIAS).clamp(-E8M0_BIAS, E8M0_BIAS)
    inv_scale = torch.exp2(-expand_blocks(exponent, rows, cols, *w.shape[-2:]).to(torch.float64))
    codes = e2m1_encode(w.to(torch.float64) * inv_scale)  # exact: a power-of-two multiply in fp64
    return pack_nibbles(codes), e8m0_encode(exponent), None


def dequantize(
    data: torch.Tensor, scale: torch.Tensor, zero: None, fmt: QuantFormat, k: int, dtype: torch.dtype
) -> torch.Tensor:
    """value(code) * 2^(scale - 127), exact in fp32/bf16/fp64 (fp32 overflows only for scale bytes >= 253)."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    values = e2m1_decode(unpack_nibbles(data, k), work)
    return (values * expand_blocks(e8m0_decode(scale, work), *fmt.block, *values.shape[-2:])).to(dtype)


def gpt_oss_blocks(data: torch.Tensor) -> torch.Tensor:
    """Packed codes [..., N, K/2] -> gpt-oss's `*_blocks` [..., N, K/32, 16] (the same bytes)."""
    return data.reshape(*data.shape[:-1], -1, 16)


def from_gpt_oss_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """gpt-oss's `*_blocks` [..., N, K/32, 16] -> packed codes [..., N, K/2] (the same bytes)."""
    return blocks.reshape(*blocks.shape[:-2], -1)
