"""The weight formats moebench knows, and what storing or reading a matrix in each one costs.

Every format stores a [..., N, K] matrix (N output rows, K the reduction axis) as three tensors:
  data   the codes: [..., N, ceil(K*bits/8)] uint8, or [..., N, K] float8_e4m3fn for fp8
  scale  one scale per block of `block` = (rows, cols) elements: [..., ceil(N/rows), ceil(K/cols)]
  zero   asymmetric integer formats only: one zero point per block, packed like the data along
         the block axis: [..., N, ceil(ceil(K/cols)*bits/8)] uint8
`layout()` gives these shapes and dtypes; it is the one place they are written down, and the byte
counts below are computed from it.

| name            | codes                   | block  | scale            | activations              |
|-----------------|-------------------------|--------|------------------|--------------------------|
| fp8-block128    | float8_e4m3fn           | 128x128| fp32 (scale_inv) | e4m3, per token per 128  |
| mxfp4           | e2m1, 2 per byte        | 1x32   | e8m0 (uint8)     | unquantised              |
| int4-g128[-asym]| uint4, 2 per byte       | 1x128  | fp32 (+ uint4 zp)| unquantised              |
| int8-g128[-asym]| uint8                   | 1x128  | fp32 (+ uint8 zp)| unquantised              |
Integer formats also come with other group sizes and fp16/bf16 scales: "int4-g32", "int8-g64-asym-fp16".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import torch

from moebench.errors import MoEInputError
from moebench.quant.blocks import cdiv

Kind = Literal["fp8", "mxfp4", "int"]

SCALE_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "e8m0": torch.uint8,  # a biased power-of-two exponent, stored as its byte (see moebench.quant.mxfp4)
}


@dataclass(frozen=True)
class QuantFormat:
    """One weight format.

    bits: bits per stored weight code. block: (rows, cols) of the elements sharing one scale.
    scale: how the scale is stored (a key of SCALE_DTYPES). symmetric: False adds a zero point per
    block (integer formats only). act_group: activations are quantised at run time per token in
    groups of this many elements along K (fp8 only), None when they stay in the model's dtype.
    k_multiple: K must be a multiple of this (mxfp4's 32-element blocks are never partial).
    """

    name: str
    kind: Kind
    bits: int
    block: tuple[int, int]
    scale: str
    symmetric: bool = True
    act_group: int | None = None
    k_multiple: int = 1

    @property
    def code_dtype(self) -> torch.dtype:
        return torch.float8_e4m3fn if self.kind == "fp8" else torch.uint8

    @property
    def scale_dtype(self) -> torch.dtype:
        return SCALE_DTYPES[self.scale]

    @property
    def group_size(self) -> int:
        """Elements along K sharing one scale."""
        return self.block[1]

    @property
    def bytes_per_weight(self) -> float:
        """Bytes read per weight element, scales and zero points included, when N and K fill whole blocks."""
        per_block = self.block[0] * self.block[1]
        zero_bytes = 0.0 if self.symmetric else self.bits / 8
        return self.bits / 8 + (self.scale_dtype.itemsize + zero_bytes) / per_block

    def layout(self, shape: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], torch.dtype] | None]:
        """Shape and dtype of data, scale and zero (None when absent) for a matrix of logical `shape` [..., N, K]."""
        *lead, n, k = shape
        rows, cols = self.block
        groups = cdiv(k, cols)
        data_k = k if self.kind == "fp8" else cdiv(k * self.bits, 8)
        zero = None if self.symmetric else ((*lead, n, cdiv(groups * self.bits, 8)), torch.uint8)
        return {
            "data": ((*lead, n, data_k), self.code_dtype),
            "scale": ((*lead, cdiv(n, rows), groups), self.scale_dtype),
            "zero": zero,
        }

    def weight_bytes(self, shape: tuple[int, ...]) -> int:
        """Exact bytes of data + scale + zero for a matrix of logical `shape` [..., N, K] (edge blocks included)."""
        total = 0
        for entry in self.layout(shape).values():
            if entry is not None:
                dims, dtype = entry
                total += math.prod(dims) * dtype.itemsize
        return total


def int_format(bits: int, group: int = 128, *, symmetric: bool = True, scale: str = "fp32") -> QuantFormat:
    """Weight-only integer format: unsigned codes, dequantised as (code - zero_point) * scale.

    Symmetric formats have no zero-point tensor; their zero point is 2^(bits-1) (8 or 128), as in
    ONNX Runtime's QMoE. The group size must be a power of two >= 2, so that K
    tiles of a kernel hold whole groups and a packed int4 row never splits a group's byte.
    """
    if bits not in (4, 8):
        raise MoEInputError(f"bits: expected 4 or 8, got {bits}")
    if group < 2 or group & (group - 1):
        raise MoEInputError(f"group: expected a power of two >= 2, got {group}")
    if scale not in ("fp32", "fp16", "bf16"):
        raise MoEInputError(f"scale: expected 'fp32', 'fp16' or 'bf16', got {scale!r}")
    name = f"int{bits}-g{group}" + ("" if symmetric else "-asym") + ("" if scale == "fp32" else f"-{scale}")
    return QuantFormat(name, "int", bits, (1, group), scale, symmetric=symmetric)


FP8_BLOCK128 = QuantFormat("fp8-block128", "fp8", 8, (128, 128), "fp32", act_group=128)
MXFP4 = QuantFormat("mxfp4", "mxfp4", 4, (1, 32), "e8m0", k_multiple=32)

QUANT_FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in (
        FP8_BLOCK128,
        MXFP4,
        int_format(4),
        int_format(8),
        int_format(4, symmetric=False),
        int_format(8, symmetric=False),
    )
}

_INT_NAME = re.compile(r"int(\d+)-g(\d+)(-asym)?(?:-(fp16|bf16))?")


def get_format(fmt: str | QuantFormat) -> QuantFormat:
    """A QuantFormat by name (a key of QUANT_FORMATS, or int{4,8}-g{G}[-asym][-fp16|-bf16]); raises for others."""
    if isinstance(fmt, QuantFormat):
        return fmt
    if not isinstance(fmt, str):
        raise MoEInputError(f"fmt: expected a format name or QuantFormat, got {type(fmt).__name__}")
    if fmt in QUANT_FORMATS:
        return QUANT_FORMATS[fmt]
    match = _INT_NAME.fullmatch(fmt)
    if match is None:
        raise MoEInputError(
            f"fmt: unknown weight format {fmt!r}; expected one of {sorted(QUANT_FORMATS)} "
            "or int{4,8}-g{G}[-asym][-fp16|-bf16]"
        )
    bits, group, asym, scale = match.groups()
    try:
        return int_format(int(bits), int(group), symmetric=asym is None, scale=scale or "fp32")
    except MoEInputError as err:
        raise MoEInputError(f"fmt: {fmt!r}: {err}") from None
