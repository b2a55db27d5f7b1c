"""Properties of every weight format on random weights: error bounds, exact round trips, layouts and sizes."""

import pytest
import torch

from moebench.quant import QUANT_FORMATS, QuantizedTensor, get_format, quantize_experts, quantize_tensor
from moebench.quant.blocks import cdiv, expand_blocks, pack_nibbles
from moebench.quant.mxfp4 import e8m0_decode, e8m0_encode

FORMATS = [*QUANT_FORMATS, "int4-g32-fp16", "int8-g64-asym-bf16", "int4-g16-asym"]
# N and K deliberately not multiples of the blocks (mxfp4 needs K % 32 == 0; int4 gets an odd K)
SHAPES = {"fp8": (2, 130, 200), "mxfp4": (2, 37, 96), "int": (2, 37, 161)}
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def _weights(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """N(0,1) with row magnitudes spread over several binades, so blocks see very different scales."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * torch.randn(*shape[:-1], 1, generator=g).mul(2).exp2()


def _error_bound(fmt, q: QuantizedTensor, w: torch.Tensor) -> torch.Tensor:
    """The largest |dequant(quant(w)) - w| each element may have, from the format's rounding."""
    n, k = w.shape[-2:]
    if fmt.kind == "mxfp4":  # E2M1 spacing is at most a quarter of |value|, 0.5 below 1; saturation too
        scale = expand_blocks(e8m0_decode(q.scale, torch.float64), *fmt.block, n, k)
        return torch.maximum(scale / 4, w.abs() / 4)
    scale = expand_blocks(q.scale.double(), *fmt.block, n, k)
    if fmt.kind == "fp8":  # 3 mantissa bits: half an ulp is 2^-4 of |value|; subnormal spacing 2^-9
        return torch.maximum(w.abs() * 2.0**-4, scale * 2.0**-10) * (1 + 1e-6)
    levels = 2**fmt.bits - 1  # half a step, plus what a rounded (fp16/bf16) scale can push past the range
    u = UNIT_ROUNDOFF[fmt.scale_dtype]
    return scale * (0.5 + levels * u / (1 - u)) * (1 + 1e-6)


@pytest.mark.parametrize("name", FORMATS)
def test_error_within_the_formats_bound(name):
    fmt = get_format(name)
    w = _weights(SHAPES[fmt.kind])
    q = quantize_tensor(w, fmt)
    err = (q.dequantize(torch.float64) - w.double()).abs()
    bound = _error_bound(fmt, q, w.double())
    worst = (err / bound).max().item()
    assert worst <= 1.0, f"{name}: error reaches {worst:.3f} x the bound"
    assert worst > 0.25, f"{name}: error only {worst:.3f} x the bound (bound too loose to mean anything)"
    # fp32 dequantisation is the fp64 one rounded once to fp32
    torch.testing.assert_close(q.dequantize(torch.float32), q.dequantize(torch.float64).float(), rtol=2**-23, atol=0)


def _representable(fmt, shape, seed=1) -> QuantizedTensor:
    """A record whose dequantised values the quantiser must map back to exactly the same bytes.

    Each block holds one element at the format's largest code (so the scale is re-derived exactly),
    scales are powers of two, and integer zero points and padding follow the quantiser's rules.
    """
    g = torch.Generator().manual_seed(seed)
    *lead, n, k = shape
    layout = fmt.layout(shape)
    scale_shape = layout["scale"][0]
    exps = torch.randint(-12, 12, scale_shape, generator=g)
    if fmt.kind == "fp8":
        codes = (torch.rand(shape, generator=g) * 896 - 448).to(torch.float8_e4m3fn).float()
        codes[..., :: fmt.block[0], :: fmt.block[1]] = 448.0
        return QuantizedTensor(fmt, shape, codes.to(torch.float8_e4m3fn), torch.exp2(exps.float()))
    if fmt.kind == "mxfp4":
        codes = torch.randint(0, 16, shape, generator=g, dtype=torch.uint8)
        codes[..., :: fmt.group_size] = 7  # 6.0
        return QuantizedTensor(fmt, shape, pack_nibbles(codes), e8m0_encode(exps))
    gs, levels = fmt.group_size, 2**fmt.bits - 1
    groups = scale_shape[-1]
    if fmt.symmetric:
        zero = torch.full(scale_shape, 2 ** (fmt.bits - 1), dtype=torch.uint8)
        low, high = zero - (2 ** (fmt.bits - 1) - 1), zero + (2 ** (fmt.bits - 1) - 1)
    else:
        zero = torch.randint(0, levels + 1, scale_shape, generator=g, dtype=torch.uint8)
        if k % gs == 1:  # a one-element group reaches only one end of its range: make it [0, levels * scale]
            zero[..., -1] = 0
        low, high = torch.zeros_like(zero), torch.full_like(zero, levels)
    rnd = torch.rand(*lead, n, groups, gs, generator=g)
    codes = (low[..., None] + rnd * (high - low + 1)[..., None]).floor().clamp(max=levels).to(torch.uint8)
    codes[..., 0], codes[..., 1] = high, low  # each group reaches its range at both ends
    last = k - (groups - 1) * gs  # elements of the last group that exist; past K: the code of 0
    codes[..., -1, last:] = zero[..., -1:]
    if last == 1:
        codes[..., -1, 0] = high[..., -1]
    codes = codes.flatten(-2)
    if fmt.bits == 4:
        data, zp = pack_nibbles(codes[..., : 2 * cdiv(k, 2)]), pack_nibbles(zero)
    else:
        data, zp = codes[..., :k].contiguous(), zero
    scale = torch.exp2(exps.float()).to(fmt.scale_dtype)
    return QuantizedTensor(fmt, shape, data, scale, None if fmt.symmetric else zp)


@pytest.mark.parametrize("name", FORMATS)
def test_representable_values_round_trip_exactly(name):
    fmt = get_format(name)
    expected = _representable(fmt, SHAPES[fmt.kind])
    w = expected.dequantize(torch.float32)
    assert torch.equal(w.double(), expected.dequantize(torch.float64))  # the values are exact in fp32
    q = quantize_tensor(w, fmt)
    assert torch.equal(q.dequantize(torch.float64), expected.dequantize(torch.float64))
    assert torch.equal(q.scale, expected.scale)
    if fmt.kind == "fp8":  # compare values: a -0 code comes back as +0
        assert torch.equal(q.data.float(), expected.data.float())
    else:
        assert torch.equal(q.data, expected.data)
    assert (q.zero is None) == (expected.zero is None)
    if q.zero is not None:
        assert torch.equal(q.zero, expected.zero)


BYTES_PER_WEIGHT = {
    "fp8-block128": 1 + 4 / 128**2,
    "mxfp4": 0.5 + 1 / 32,
    "int4-g128": 0.5 + 4 / 128,
    "int8-g128": 1 + 4 / 128,
    "int4-g128-asym": 0.5 + (4 + 0.5) / 128,
    "int8-g128-asym": 1 + (4 + 1) / 128,
}


def test_format_table_and_bytes():
    assert {name: QUANT_FORMATS[name].bytes_per_weight for name in BYTES_PER_WEIGHT} == BYTES_PER_WEIGHT
    assert get_format("int4-g32-fp16").bytes_per_weight == 0.5 + 2 / 32
    assert [get_format(n).name for n in ("int4-g32-fp16", "int8-g64-asym-bf16")] == [
        "int4-g32-fp16",
        "int8-g64-asym-bf16",
    ]
    assert QUANT_FORMATS["fp8-block128"].act_group == 128
    assert all(f.act_group is None for f in QUANT_FORMATS.values() if f.kind != "fp8")
    # exact counts on a whole-block shape match the nominal bytes per weight
    for name, per_weight in BYTES_PER_WEIGHT.items():
        assert get_format(name).weight_bytes((3, 256, 512)) == 3 * 256 * 512 * per_weight


@pytest.mark.parametrize("name", ["fp8-block128", "mxfp4", "int4-g128", "int4-g16-asym", "int8-g32-asym"])
def test_quantize_experts_layout_and_bytes(name):
    fmt = get_format(name)
    e, h, i = 3, 64, 96  # w1 [E, 2I, H], w2 [E, H, I]; I = 96 leaves partial int/fp8 blocks
    w1, w2 = _weights((e, 2 * i, h), seed=2), _weights((e, h, i), seed=3)
    q = quantize_experts(w1, w2, name)
    assert q.fmt == fmt and q.w1.shape == (e, 2 * i, h) and q.w2.shape == (e, h, i)
    assert q.nbytes == fmt.weight_bytes(w1.shape) + fmt.weight_bytes(w2.shape)
    for part, w in ((q.w1, w1), (q.w2, w2)):  # one expert at a time == the whole tensor at once
        whole = quantize_tensor(w, fmt)
        assert torch.equal(part.dequantize(torch.float64), whole.dequantize(torch.float64))
    d1, d2 = q.dequantize(torch.float64)
    assert d1.dtype == torch.float64 and d1.shape == w1.shape and d2.shape == w2.shape
    moved = q.to("meta")
    assert moved.w1.data.device.type == "meta" and moved.nbytes == q.nbytes
