"""Every quantiser against small cases worked out by hand: the expected bytes and scales are written literally."""

import math

import pytest
import torch

from moebench.errors import MoEInputError
from moebench.quant import get_format, quantize_tensor
from moebench.quant.fp8 import fake_quantize_activations, quantize_activations
from moebench.quant.mxfp4 import e2m1_decode, e2m1_encode, e8m0_decode, e8m0_encode, from_gpt_oss_blocks, gpt_oss_blocks

E2M1_TABLE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def test_e2m1_code_table_both_ways():
    codes = torch.arange(16, dtype=torch.uint8)
    values = e2m1_decode(codes, torch.float64)
    assert values.tolist() == E2M1_TABLE
    assert torch.signbit(values).tolist() == [False] * 8 + [True] * 8  # code 8 is -0
    assert e2m1_encode(torch.tensor(E2M1_TABLE)).tolist() == list(range(16))


def test_e8m0_every_code():
    codes = torch.arange(256, dtype=torch.uint8)
    scales = e8m0_decode(codes, torch.float64)
    assert scales[0].item() == 2.0**-127 and scales[127].item() == 1.0 and scales[254].item() == 2.0**127
    assert math.isnan(scales[255].item())
    assert scales[:255].tolist() == [2.0 ** (c - 127) for c in range(255)]
    # fp32 holds all of them exactly (2^-127 as a subnormal)
    assert e8m0_decode(codes, torch.float32)[:255].double().tolist() == scales[:255].tolist()
    exponents = torch.arange(-127, 128)
    assert e8m0_encode(exponents).tolist() == list(range(255))
    assert e8m0_decode(e8m0_encode(exponents), torch.float64).tolist() == [2.0**e for e in range(-127, 128)]
    if hasattr(torch, "float8_e8m0fnu"):  # torch's own E8M0 dtype agrees
        torch_view = codes.view(torch.float8_e8m0fnu).double()
        assert torch_view[:255].tolist() == scales[:255].tolist() and math.isnan(torch_view[255].item())
    for bad in (-128, 128):
        with pytest.raises(MoEInputError, match=r"exponent: expected values in \[-127, 127\]"):
            e8m0_encode(torch.tensor([0, bad]))


# One 32-element MXFP4 block. Its amax is 3.75 = 7.5 * 0.5: floor(log2 3.75) - 2 = -1, so the scale
# is 2^-1 (E8M0 byte 126 = 0x7E) and each element is value / 0.5. Written as those scaled values:
MX_SCALED = [
    *[0, 0.5, 1, 1.5, 2, 3, 4, 6],  # exact codes 0..7
    *[-0.5, -1, -1.5, -2, -3, -4, -6, 0.25],  # exact codes 9..15; 0.25: tie between 0 and 0.5 -> 0 (even)
    *[0.75, 1.25, 1.75, 2.5, 3.5, 5, 7, 7.5],  # ties -> 1, 1, 2, 2, 4, 4 (even codes); 7, 7.5 saturate to 6
    *[-5, -0.25, 0.3, 2.6, -7, 0.1, 4.9, 5.1],  # tie -> -4; -0 (code 8); 0.5; 3; -6; 0; 4; 6
]
MX_CODES = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 0, 2, 2, 4, 4, 6, 6, 7, 7, 14, 8, 1, 5, 15, 0, 6, 7]
# byte j = code[2j] | code[2j+1] << 4
MX_BYTES = [0x10, 0x32, 0x54, 0x76, 0xA9, 0xCB, 0xED, 0x0F, 0x22, 0x44, 0x66, 0x77, 0x8E, 0x51, 0x0F, 0x76]


def test_mxfp4_hand_block():
    w = torch.tensor(MX_SCALED).mul(0.5)[None, None]  # [1, 1, 32]
    q = quantize_tensor(w, "mxfp4")
    assert q.data.tolist() == [[MX_BYTES]]
    assert q.scale.tolist() == [[[0x7E]]]
    assert q.dequantize(torch.float64)[0, 0].tolist() == [0.5 * E2M1_TABLE[c] for c in MX_CODES]
    assert gpt_oss_blocks(q.data).shape == (1, 1, 1, 16) and torch.equal(
        from_gpt_oss_blocks(gpt_oss_blocks(q.data)), q.data
    )


def test_mxfp4_scale_exponents():
    rows = torch.zeros(4, 64)
    rows[0, :32] = 6.0  # amax 6: floor(log2 6) - 2 = 0 -> byte 127, codes 7
    rows[0, 32] = -(2.0**-128)  # floor(log2) - 2 = -130 clamps to -127 -> byte 0; -2^-128 = -0.5 * 2^-127
    rows[1, 5] = 2.0**100  # exponent 98 -> byte 225, code 4 (4 * 2^98)
    rows[2, 40] = 1.0  # second block only; first block all zero -> byte 0 (2^-127), codes 0
    rows[3, :] = 7.99  # exponent 0, saturates: code 7 (6.0)
    q = quantize_tensor(rows[None], "mxfp4")
    assert q.scale[0].tolist() == [[127, 0], [225, 0], [0, 125], [127, 127]]
    dq = q.dequantize(torch.float64)[0]
    assert dq[0, :32].eq(6.0).all() and dq[0, 32].item() == -(2.0**-128)
    assert dq[1, 5].item() == 2.0**100 and dq[2, 40].item() == 1.0 and dq[3].eq(6.0).all()
    assert dq[2, :32].eq(0).all()


def test_fp8_blocks_on_130x129():
    """Scales [ceil(130/128), ceil(129/128)] = [2, 2]; edge blocks are partial and scale from what exists."""
    w = torch.zeros(1, 130, 129)
    w[0, 0, 0], w[0, 5, 7], w[0, 127, 127] = 448.0, -2.5, 0.3  # block (0,0): amax 448 -> scale 1
    w[0, 3, 128], w[0, 4, 128] = 0.875, -0.4375  # block (0,1), one column: scale 0.875/448 = 2^-9
    w[0, 129, 100], w[0, 128, 0] = -7.0, 1.0  # block (1,0), two rows: scale 7/448 = 2^-6
    # block (1,1) (2x1 elements) is all zero: scale 1, codes 0
    q = quantize_tensor(w, "fp8-block128")
    assert q.scale.tolist() == [[[1.0, 2.0**-9], [2.0**-6, 1.0]]]
    assert q.data.dtype == torch.float8_e4m3fn and q.data.shape == (1, 130, 129)
    codes = q.data.double()[0]
    expected_codes = {(0, 0): 448, (5, 7): -2.5, (127, 127): 0.3125, (3, 128): 448, (4, 128): -224, (129, 100): -448}
    expected_codes[(128, 0)] = 64
    for (r, c), value in expected_codes.items():
        assert codes[r, c].item() == value, (r, c)
    assert int(codes.ne(0).sum()) == len(expected_codes)
    expected = w.double().clone()
    expected[0, 127, 127] = 0.3125  # 0.3 rounds to the nearest e4m3 value, 1.25 * 2^-2
    assert torch.equal(q.dequantize(torch.float64), expected)


def test_fp8_activations_per_token_group_of_128():
    x = torch.zeros(2, 130)
    x[0, 0], x[0, 1] = 448.0, 3.3  # group 0 of token 0: scale 1; 3.3 -> e4m3 3.25
    x[0, 128], x[0, 129] = 0.875, -0.4375  # partial group 1 (2 elements): scale 2^-9
    q, s = quantize_activations(x)  # token 1 is all zero: scales 1
    assert s.tolist() == [[1.0, 2.0**-9], [1.0, 1.0]]
    assert q.double()[0, [0, 1, 128, 129]].tolist() == [448, 3.25, 448, -224]
    expected = x.clone()
    expected[0, 1] = 3.25
    assert torch.equal(fake_quantize_activations(x), expected)
    q0, s0 = quantize_activations(torch.zeros(0, 130))
    assert q0.shape == (0, 130) and s0.shape == (0, 2)


def test_int4_symmetric_nibble_order_and_partial_group():
    # group 0: amax 7 -> scale 1; -3.5 -> -4 and 0.5 -> 0 (ties to even). group 1: scale 0.25,
    # 0.125 -> 0.5 -> 0, -0.375 -> -1.5 -> -2. group 2 (one element, K = 9): -3.5 -> scale 0.5, -7.
    w = torch.tensor([[7, -3.5, 0.5, 1, 1.75, -0.25, 0.125, -0.375, -3.5]])
    q = quantize_tensor(w, "int4-g4")
    # codes = q + 8: [15, 4, 8, 9 | 15, 7, 8, 6 | 1, (8 = the pad nibble, a quantised zero)]
    assert q.data.tolist() == [[0x4F, 0x98, 0x7F, 0x68, 0x81]]
    assert q.scale.tolist() == [[1.0, 0.25, 0.5]] and q.zero is None
    assert q.dequantize(torch.float64).tolist() == [[7, -4, 0, 1, 1.75, -0.25, 0, -0.5, -3.5]]


def test_int4_asymmetric_zero_points():
    # group 0: range [-1, 6.5] -> scale 0.5, zero 2, codes [0, 2, 6, 15]
    # group 1: range widened to include 0: [0, 3.75] -> scale 0.25, zero 0, codes [1, 4, 12, 15]
    # group 2: [-0.625, 3.125] -> scale 0.25, -lo/scale = 2.5 -> zero 2 (ties to even);
    #          -0.625/0.25 = -2.5 -> -2 -> code 0; 3.125/0.25 = 12.5 -> 12 -> code 14
    w = torch.tensor([[-1, 0, 2, 6.5, 0.25, 1, 3, 3.75, -0.625, 0, 1, 3.125]])
    q = quantize_tensor(w, "int4-g4-asym")
    assert q.data.tolist() == [[0x20, 0xF6, 0x41, 0xFC, 0x20, 0xE6]]
    assert q.scale.tolist() == [[0.5, 0.25, 0.25]]
    assert q.zero.tolist() == [[0x02, 0x02]]  # zero points [2, 0, 2], two per byte, odd count padded with 0
    assert q.dequantize(torch.float64).tolist() == [[-1, 0, 2, 6.5, 0.25, 1, 3, 3.75, -0.5, 0, 1, 3]]


def test_int8_symmetric_and_asymmetric():
    q = quantize_tensor(torch.tensor([[127, -63.5, 0.5, -1.5]]), "int8-g4")
    assert q.data.tolist() == [[255, 64, 128, 126]] and q.scale.tolist() == [[1.0]]
    q = quantize_tensor(torch.tensor([[-1.0, 0, 254, 100.5]]), "int8-g4-asym")  # scale 1, zero 1
    assert q.data.tolist() == [[0, 1, 255, 101]] and q.zero.tolist() == [[1]]
    assert q.dequantize(torch.float64).tolist() == [[-1, 0, 254, 100]]  # 100.5 -> 100 (ties to even)


def test_all_zero_groups_get_scale_one_and_dequantise_to_zero():
    for name in ("int4-g4", "int8-g4-asym", "int4-g4-asym", "fp8-block128"):
        q = quantize_tensor(torch.zeros(1, 3, 8), name)
        assert q.scale.eq(1).all(), name
        assert q.dequantize(torch.float64).eq(0).all(), name
    assert get_format("int4-g4").layout((1, 3, 8))["zero"] is None
