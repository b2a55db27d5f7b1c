"""fp8-block128: DeepSeek-V3's FP8 experts and the run-time activation quantisation that goes with them.

Weights: float8_e4m3fn codes with one fp32 scale per 128x128 block of each [N, K] matrix, stored like
DeepSeek-V3's checkpoint (`weight` e4m3 [N, K], `weight_scale_inv` fp32 [ceil(N/128), ceil(K/128)]).
The scale multiplies: w = float(q) * scale_inv, as DeepSeek-V3's `weight_dequant` kernel computes it
(deepseek-ai/DeepSeek-V3, inference/kernel.py). Quantisation: scale_inv = amax(block) / 448 (448 is
the largest e4m3 value), q = e4m3(w / scale_inv), rounded to nearest even, so every block uses the
full e4m3 range.

Activations (w8a8): per token, groups of 128 consecutive elements along K, each quantised to e4m3
with an fp32 scale amax(group) / 448 (DeepSeek-V3's `act_quant`). The GEMM then computes
sum over K-groups of dot(q_x, q_w) * s_x * s_w, which is why both scale blocks are 128 wide along K.

Sizes that are not multiples of 128 (N, K or the activations' K): the last block along each axis is
partial and its scale comes from the elements that exist (the same as DeepSeek-V3's masked
`weight_quant` kernel and ONNX Runtime's block-FP8 QMoE, which both allow partial edge blocks).
A block whose amax is 0 (or whose amax / 448 underflows to 0) gets scale 1 and zero codes, so no
division by zero happens and the block still dequantises to exactly 0.
The quantisation arithmetic is fp32, whatever the input dtype.
"""

from __future__ import annotations

import torch

from moebench.quant.blocks import block_amax, check_float_matrix, expand_blocks
from moebench.quant.formats import FP8_BLOCK128, QuantFormat

E4M3_MAX = 448.0


def quantize_blocks(w: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., N, K] float -> (e4m3 codes [..., N, K], fp32 scales [..., ceil(N/rows), ceil(K/cols)])."""
    w = w.float()
    s = block_amax(w, rows, cols) / E4M3_MAX
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = (w / expand_blocks(s, rows, cols, *w.shape[-2:])).clamp(-E4M3_MAX, E4M3_MAX)
    return q.to(torch.float8_e4m3fn), s


def dequantize_blocks(q: torch.Tensor, s: torch.Tensor, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    """float(q) * scale per block, computed in fp64 for an fp64 result (exact) and in fp32 otherwise."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    return (q.to(work) * expand_blocks(s.to(work), rows, cols, *q.shape[-2:])).to(dtype)


def quantize(w: torch.Tensor, fmt: QuantFormat) -> tuple[torch.Tensor, torch.Tensor, None]:
    data, scale = quantize_blocks(w, *fmt.block)
    return data, scale, None


def dequantize(
    data: torch.Tensor, scale: torch.Tensor, zero: None, fmt: QuantFormat, k: int, dtype: torch.dtype
) -> torch.Tensor:
    return dequantize_blocks(data, scale, *fmt.block, dtype)


def quantize_activations(x: torch.Tensor, group: int = FP8_BLOCK128.act_group) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, K] -> (e4m3 codes [T, K], fp32 scales [T, ceil(K/group)]), one scale per token per group."""
    check_float_matrix("x", x, ndim=2, empty_rows=True)
    return quantize_blocks(x, 1, group)


def fake_quantize_activations(x: torch.Tensor, group: int = FP8_BLOCK128.act_group) -> torch.Tensor:
    """x quantised as the w8a8 GEMM sees it and dequantised again, in x's dtype (the reference's input)."""
    q, s = quantize_activations(x, group)
    return dequantize_blocks(q, s, 1, group, x.dtype)
