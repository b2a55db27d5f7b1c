"""Bad input to the quantisers raises one MoEInputError naming the argument."""

import math

import pytest
import torch

from moebench.errors import MoEInputError
from moebench.quant import QuantizedExperts, QuantizedTensor, get_format, int_format, quantize_experts, quantize_tensor
from moebench.quant.fp8 import quantize_activations

W1, W2 = torch.randn(2, 128, 64), torch.randn(2, 64, 64)  # E=2, I=64, H=64 (swiglu)


def _with(t, index, value):
    t = t.clone()
    t[index] = value
    return t


BAD_CALLS = [
    (lambda: get_format("int3-g128"), r"fmt: 'int3-g128': bits: expected 4 or 8, got 3"),
    (lambda: int_format(2), r"bits: expected 4 or 8, got 2"),
    (lambda: get_format("nf4"), r"fmt: unknown weight format 'nf4'"),
    (lambda: get_format(4), r"fmt: expected a format name or QuantFormat, got int"),
    (lambda: get_format("int4-g96"), r"fmt: 'int4-g96': group: expected a power of two >= 2, got 96"),
    (lambda: get_format("int4-g1"), r"fmt: 'int4-g1': group: expected a power of two >= 2, got 1"),
    (lambda: int_format(4, 128, scale="fp8"), r"scale: expected 'fp32', 'fp16' or 'bf16', got 'fp8'"),
    (lambda: quantize_tensor([1.0], "int4-g128"), r"w: expected a torch.Tensor, got list"),
    (
        lambda: quantize_tensor(torch.ones(4, 8, dtype=torch.int32), "int4-g4"),
        r"w: expected a float32/.* got torch.int32",
    ),
    (lambda: quantize_tensor(torch.ones(8), "int4-g4"), r"w: expected shape \[..., N, K\] with N >= 1, K >= 1"),
    (lambda: quantize_tensor(torch.ones(0, 8), "int4-g4"), r"w: expected shape \[..., N, K\] with N >= 1"),
    (
        lambda: quantize_tensor(torch.ones(2, 48), "mxfp4"),
        r"w: mxfp4 needs K \(last dim\) to be a multiple of 32, got 48",
    ),
    (lambda: quantize_tensor(_with(torch.ones(2, 8), (1, 3), math.nan), "int8-g4"), r"w: expected finite values"),
    (lambda: quantize_tensor(_with(torch.ones(2, 8), (0, 0), math.inf), "fp8-block128"), r"w: expected finite values"),
    (lambda: quantize_experts(W1[0], W2, "int4-g32"), r"w1: expected 3 dims, got shape \[128, 64\]"),
    (lambda: quantize_experts(W1, W2[:1], "int4-g32"), r"w1: expected \[E, G\*I, H\] = \[1, 64 or 128, 64\]"),
    (lambda: quantize_experts(W1[:, :100], W2, "int4-g32"), r"w1: expected \[E, G\*I, H\] = \[2, 64 or 128, 64\]"),
    (lambda: quantize_experts(W1, _with(W2, (1, 5, 7), math.nan), "int4-g32"), r"w2: expected finite values"),
    (lambda: quantize_experts(W1, W2, "fp4"), r"fmt: unknown weight format 'fp4'"),
    (lambda: quantize_activations(torch.ones(2, 3, 128)), r"x: expected 2 dims"),
    (lambda: quantize_activations(torch.ones(2, 0)), r"x: expected shape \[..., N, K\] with N >= 0, K >= 1"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(MoEInputError, match=match):
        call()


def test_hand_built_records_are_checked():
    q = quantize_tensor(W1, "int4-g32-asym")
    fmt = q.fmt
    with pytest.raises(MoEInputError, match=r"data: expected \[2, 128, 32\] torch.uint8 for int4-g32-asym"):
        QuantizedTensor(fmt, q.shape, q.data[..., :31], q.scale, q.zero)
    with pytest.raises(
        MoEInputError, match=r"scale: expected \[2, 128, 2\] torch.float32 .* got \[2, 128, 2\] torch.float16"
    ):
        QuantizedTensor(fmt, q.shape, q.data, q.scale.half(), q.zero)
    with pytest.raises(MoEInputError, match=r"zero: expected \[2, 128, 1\] torch.uint8 .* got NoneType"):
        QuantizedTensor(fmt, q.shape, q.data, q.scale, None)
    with pytest.raises(MoEInputError, match=r"zero: format int4-g32 has no zero tensor"):
        QuantizedTensor(get_format("int4-g32"), q.shape, q.data, q.scale, q.zero)
    with pytest.raises(MoEInputError, match=r"data, scale, zero: expected one device"):
        QuantizedTensor(fmt, q.shape, q.data, q.scale.to("meta"), q.zero)
    w2 = quantize_tensor(W2, "int4-g32")
    with pytest.raises(MoEInputError, match=r"w2: expected format int4-g32-asym, got int4-g32"):
        QuantizedExperts(fmt, q, w2)
    with pytest.raises(MoEInputError, match=r"dtype: expected a floating dtype, got torch.int8"):
        q.dequantize(torch.int8)
