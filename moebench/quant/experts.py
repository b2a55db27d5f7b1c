"""Quantised expert weights: one record per matrix, one per layer, and the functions that make and undo them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moebench.errors import MoEInputError
from moebench.quant import fp8, intq, mxfp4
from moebench.quant.blocks import check_float_matrix
from moebench.quant.formats import QuantFormat, get_format

_CODECS = {"fp8": fp8, "mxfp4": mxfp4, "int": intq}


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """A [..., N, K] matrix in format `fmt`: data, scale and zero (or None) as QuantFormat.layout describes.

    shape is the logical (unpacked) shape. The tensors are checked against the layout on
    construction, so a record built by hand (e.g. from a checkpoint) is checked too.
    """

    fmt: QuantFormat
    shape: tuple[int, ...]
    data: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name, expected in self.fmt.layout(self.shape).items():
            t = getattr(self, name)
            if expected is None:
                if t is not None:
                    raise MoEInputError(f"{name}: format {self.fmt.name} has no {name} tensor, got one")
                continue
            dims, dtype = expected
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != dims or t.dtype != dtype:
                got = f"{list(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise MoEInputError(
                    f"{name}: expected {list(dims)} {dtype} for {self.fmt.name} {list(self.shape)}, got {got}"
                )
        devices = {t.device for t in (self.data, self.scale, self.zero) if t is not None}
        if len(devices) != 1:
            raise MoEInputError(f"data, scale, zero: expected one device, got {sorted(map(str, devices))}")

    @property
    def nbytes(self) -> int:
        """Bytes of data + scale + zero: what reading the whole matrix costs."""
        return sum(t.nbytes for t in (self.data, self.scale, self.zero) if t is not None)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float matrix these codes stand for, [..., N, K]; exact in fp64."""
        if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise MoEInputError(f"dtype: expected a floating dtype, got {dtype}")
        return _CODECS[self.fmt.kind].dequantize(self.data, self.scale, self.zero, self.fmt, self.shape[-1], dtype)

    def to(self, device: str | torch.device) -> QuantizedTensor:
        zero = None if self.zero is None else self.zero.to(device)
        return QuantizedTensor(self.fmt, self.shape, self.data.to(device), self.scale.to(device), zero)

    def select(self, index: torch.Tensor | int) -> QuantizedTensor:
        """The matrices `index` (int64 ids, repeats allowed, or one int) of the leading axis of a [E, N, K] tensor."""
        zero = None if self.zero is None else self.zero[index]
        shape = self.shape[1:] if isinstance(index, int) else (int(index.numel()), *self.shape[1:])
        return QuantizedTensor(self.fmt, shape, self.data[index], self.scale[index], zero)


def quantize_tensor(w: torch.Tensor, fmt: str | QuantFormat, *, name: str = "w") -> QuantizedTensor:
    """Quantise a float [..., N, K] matrix; bad input raises MoEInputError naming `name`."""
    fmt = get_format(fmt)
    check_float_matrix(name, w)
    if w.shape[-1] % fmt.k_multiple:
        raise MoEInputError(
            f"{name}: {fmt.name} needs K (last dim) to be a multiple of {fmt.k_multiple}, got {w.shape[-1]}"
        )
    data, scale, zero = _CODECS[fmt.kind].quantize(w.detach(), fmt)
    return QuantizedTensor(fmt, tuple(w.shape), data, scale, zero)


@dataclass(frozen=True, eq=False)
class QuantizedExperts:
    """The expert weights of one MoE layer in one format, in moebench's canonical layout.

    w1: [E, G*I, H] (G=2 for swiglu: gate rows then up rows), w2: [E, H, I]; see moebench.weights.
    The router is not quantised.
    """

    fmt: QuantFormat
    w1: QuantizedTensor
    w2: QuantizedTensor

    def __post_init__(self) -> None:
        _check_expert_shapes(self.w1.shape, self.w2.shape)
        for name in ("w1", "w2"):
            if getattr(self, name).fmt != self.fmt:
                raise MoEInputError(f"{name}: expected format {self.fmt.name}, got {getattr(self, name).fmt.name}")

    @property
    def nbytes(self) -> int:
        return self.w1.nbytes + self.w2.nbytes

    def dequantize(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(w1, w2) as float tensors in the canonical layout; fp64 is exact (the reference's weights)."""
        return self.w1.dequantize(dtype), self.w2.dequantize(dtype)

    def to(self, device: str | torch.device) -> QuantizedExperts:
        return QuantizedExperts(self.fmt, self.w1.to(device), self.w2.to(device))

    def select(self, experts: torch.Tensor) -> QuantizedExperts:
        """The experts `experts` (int64 ids, in that order, repeats allowed) as a layer of their own."""
        return QuantizedExperts(self.fmt, self.w1.select(experts), self.w2.select(experts))

    def expert(self, e: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert e's (w1 [G*I, H], w2 [H, I]) dequantised in `dtype` (fp64: exact), one expert's scratch only."""
        return self.w1.select(e).dequantize(dtype), self.w2.select(e).dequantize(dtype)


def _check_expert_shapes(w1: tuple[int, ...], w2: tuple[int, ...]) -> None:
    if len(w1) != 3 or len(w2) != 3:
        raise MoEInputError(f"w1, w2: expected [E, G*I, H] and [E, H, I], got {list(w1)} and {list(w2)}")
    e, h, i = w2
    if w1[0] != e or w1[2] != h or w1[1] not in (i, 2 * i):
        raise MoEInputError(
            f"w1: expected [E, G*I, H] = [{e}, {i} or {2 * i}, {h}] to match w2 [E, H, I] = {list(w2)}, got {list(w1)}"
        )


def quantize_experts(w1: torch.Tensor, w2: torch.Tensor, fmt: str | QuantFormat) -> QuantizedExperts:
    """Quantise canonical expert weights w1 [E, G*I, H] and w2 [E, H, I], one expert at a time.

    One expert at a time keeps the fp32/fp64 scratch (and the finiteness check) to one expert's
    matrices: deepseek-v3's 256 experts would need tens of GB at once.
    """
    fmt = get_format(fmt)
    for name, w in (("w1", w1), ("w2", w2)):
        check_float_matrix(name, w, ndim=3, finite=False)
    _check_expert_shapes(tuple(w1.shape), tuple(w2.shape))
    return QuantizedExperts(fmt, _quantize_per_expert(w1, fmt, "w1"), _quantize_per_expert(w2, fmt, "w2"))


def _quantize_per_expert(w: torch.Tensor, fmt: QuantFormat, name: str) -> QuantizedTensor:
    out = {
        key: None if entry is None else torch.empty(entry[0], dtype=entry[1], device=w.device)
        for key, entry in fmt.layout(tuple(w.shape)).items()
    }
    for e in range(w.shape[0]):
        part = quantize_tensor(w[e], fmt, name=name)
        for key, t in out.items():
            if t is not None:
                t[e] = getattr(part, key)
    return QuantizedTensor(fmt, tuple(w.shape), **out)
