"""Shared pieces of every weight format: blocks of elements that share one scale, and 4-bit packing.

A block is `rows x cols` elements of a [..., N, K] matrix (K is the reduction axis of the GEMM):
128x128 for fp8-block128, 1x32 for mxfp4, 1xg for the integer formats. Blocks at the bottom and
right edges may be partial when N or K is not a multiple of the block; their statistics (amax, min,
max) cover only the elements that exist, because the missing ones are padded with zeros and every
statistic here includes zero anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moebench.errors import MoEInputError


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def block_view(w: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[..., N, K] -> [..., ceil(N/rows), rows, ceil(K/cols), cols], zero-padded at the edges."""
    *lead, n, k = w.shape
    nb, kb = cdiv(n, rows), cdiv(k, cols)
    w = F.pad(w, (0, kb * cols - k, 0, nb * rows - n))
    return w.reshape(*lead, nb, rows, kb, cols)


def block_amax(w: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Largest |w| of each block: [..., ceil(N/rows), ceil(K/cols)]."""
    return block_view(w, rows, cols).abs().amax(dim=(-3, -1))


def block_min_max(w: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """min(w, 0) and max(w, 0) of each block, so that zero always lies in the block's range."""
    view = block_view(w, rows, cols)
    return view.amin(dim=(-3, -1)).clamp(max=0), view.amax(dim=(-3, -1)).clamp(min=0)


def expand_blocks(s: torch.Tensor, rows: int, cols: int, n: int, k: int) -> torch.Tensor:
    """One value per block [..., ceil(N/rows), ceil(K/cols)] -> one per element [..., N, K]."""
    return s.repeat_interleave(rows, dim=-2).repeat_interleave(cols, dim=-1)[..., :n, :k]


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes [..., K] (uint8, 0..15) -> bytes [..., ceil(K/2)].

    Element 2j goes in the low nibble of byte j and element 2j+1 in its high nibble (gpt-oss's
    MXFP4 blocks and ONNX Runtime's QMoE int4 weights use this order). An odd K is padded with
    a zero nibble.
    """
    if codes.shape[-1] % 2:
        codes = F.pad(codes, (0, 1))
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Bytes [..., ceil(K/2)] -> 4-bit codes [..., K] (uint8), the inverse of pack_nibbles."""
    codes = torch.stack((packed & 0x0F, packed >> 4), dim=-1)
    return codes.reshape(*packed.shape[:-1], -1)[..., :k]


def check_float_matrix(
    name: str, w: object, *, ndim: int | None = None, empty_rows: bool = False, finite: bool = True
) -> torch.Tensor:
    """A floating tensor [..., N, K] (with finite values unless finite=False), or MoEInputError naming it.

    K >= 1 always; N >= 1 unless empty_rows (activations may have T=0 tokens).
    """
    if not isinstance(w, torch.Tensor):
        raise MoEInputError(f"{name}: expected a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise MoEInputError(f"{name}: expected a float32/float16/bfloat16/float64 tensor, got {w.dtype}")
    if ndim is not None and w.dim() != ndim:
        raise MoEInputError(f"{name}: expected {ndim} dims, got shape {list(w.shape)}")
    if w.dim() < 2 or w.shape[-1] == 0 or (w.shape[-2] == 0 and not empty_rows):
        rows = "N >= 0" if empty_rows else "N >= 1"
        raise MoEInputError(f"{name}: expected shape [..., N, K] with {rows}, K >= 1, got {list(w.shape)}")
    if finite and not bool(torch.isfinite(w).all()):
        raise MoEInputError(f"{name}: expected finite values, found NaN or Inf")
    return w
