"""Quantised checkpoints' experts through weights_from_hf: DeepSeek-V3's FP8 (e4m3 codes, fp32 `*_scale_inv` per
128x128 block) and gpt-oss's MXFP4 (`*_blocks` / `*_scales`), in real transformers blocks built from small
configs whose expert tensors are replaced by codes and scales made with moebench.quant.

Checked: codes and scales arrive bit for bit (no dequantise-and-requantise); the module's forward on the
dequantised weights equals the converted layer's fp64 reference on those weights (fp32, 1e-5); naive_loop
and triton_grouped pass the parity gate on the whole converted layer (DeepSeek-V3's shared expert and group-limited
routing, gpt-oss's expert biases and clamped SwiGLU);
the declared layout is refused where it does not hold, each error naming the tensor or key.
Sizes: H=140 (partial 128-blocks), I=128 for FP8; H=96, I=64 for MXFP4 (whole 32-element groups, as MXFP4
requires, but not multiples of 128).
"""

import pytest
import torch
from families import deepseek_v3, gpt_oss, randomize, run_block
from torch import nn

from moebench import registry
from moebench.errors import MoEInputError
from moebench.hf import weights_from_hf
from moebench.parity import compare, poisoned_like
from moebench.quant import mxfp4, quantize_experts
from moebench.quant.blocks import pack_nibbles
from moebench.quant.formats import MXFP4
from moebench.quant.fp8 import dequantize_blocks, quantize_blocks
from moebench.reference import reference_moe, reference_unquantized

pytest.importorskip("transformers")

TOKENS = (0, 1, 7, 33)
FP32_REL_L2 = 1e-5
# DeepSeek-V3's config.json quantization_config (deepseek-ai/DeepSeek-V3)
FP8_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128], "activation_scheme": "dynamic"}


def _deepseek(intermediate: int = 128) -> nn.Module:
    sizes = dict(hidden_size=140, n_routed_experts=6, num_experts_per_tok=2, n_group=2, topk_group=1)
    return randomize(deepseek_v3(moe_intermediate_size=intermediate, **sizes))


def _gpt_oss() -> nn.Module:
    return randomize(gpt_oss(hidden_size=96, intermediate_size=64))


def _replace(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    if hasattr(module, name):
        delattr(module, name)
    if value is not None:
        module.register_parameter(name, nn.Parameter(value, requires_grad=False))


def _fp8_block(intermediate: int = 128):
    """(FP8 block, the same block on the dequantised weights, {name: (codes, scale_inv)}) for DeepSeek-V3.

    The codes use half of e4m3's range (scales doubled), which moebench's quantiser never gives: a reader
    that dequantised and quantised again would not return them."""
    block, plain = _deepseek(intermediate), _deepseek(intermediate)
    stored = {}
    for name in ("gate_up_proj", "down_proj"):
        codes, scale = quantize_blocks(getattr(block.experts, name).detach(), 128, 128)
        codes, scale = (codes.float() / 2).to(codes.dtype), scale * 2
        stored[name] = (codes, scale)
        _replace(block.experts, name, codes)
        _replace(block.experts, f"{name}_scale_inv", scale)
        _replace(plain.experts, name, dequantize_blocks(codes, scale, 128, 128, torch.float32))
    return block, plain, stored


def _mxfp4_block():
    """(MXFP4 gpt-oss block, the block on the dequantised weights, {name: (packed [E, N, K/2], scales)}), the
    checkpoint's [out, in] rows: gate_up's gate and up rows interleaved, as gpt-oss keeps them.

    Scales from moebench's quantiser, codes drawn at random with magnitudes up to 3 (of 6): the quantiser
    would give each block a smaller scale, so a reader that re-quantised would not return them."""
    block, plain = _gpt_oss(), _gpt_oss()
    gen = torch.Generator().manual_seed(3)
    stored = {}
    for name in ("gate_up_proj", "down_proj"):
        out_in = getattr(block.experts, name).detach().transpose(1, 2)  # the module's [E, in, out] -> [E, out, in]
        _, scales, _ = mxfp4.quantize(out_in)
        magnitude = torch.randint(0, 6, out_in.shape, generator=gen, dtype=torch.uint8)  # 0 .. 3.0
        data = pack_nibbles(magnitude | (torch.randint(0, 2, out_in.shape, generator=gen, dtype=torch.uint8) << 3))
        stored[name] = (data, scales)
        _replace(block.experts, name, None)
        block.experts.register_buffer(f"{name}_blocks", mxfp4.gpt_oss_blocks(data))
        block.experts.register_buffer(f"{name}_scales", scales)
        dequantised = mxfp4.dequantize(data, scales, None, MXFP4, out_in.shape[-1], torch.float32)
        _replace(plain.experts, name, dequantised.transpose(1, 2).contiguous())
    return block, plain, stored


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def _inputs(hidden: int, t: int) -> torch.Tensor:
    return torch.randn(t, hidden, generator=torch.Generator().manual_seed(200 + t))


def _module_matches_reference(plain: nn.Module, weights) -> None:
    for t in TOKENS:
        x = _inputs(weights.spec.hidden, t)
        result = compare(run_block(plain, x), reference_unquantized(x, weights), torch.float32)
        assert result.ok and result.rel_l2 <= FP32_REL_L2, f"module T={t}: {result}"


def _gate(weights, impl: str, device: str) -> None:
    info = registry.get(impl)
    assert info.spec_unsupported(weights.spec) is None, info.spec_unsupported(weights.spec)
    on_device = weights.to(device)
    for t in TOKENS:
        x = _inputs(weights.spec.hidden, t)
        out = info(x.to(device), on_device, out=poisoned_like(x.to(device))).cpu()
        result = compare(out, reference_moe(x, weights), torch.float32)
        assert result.ok and result.rel_l2 <= FP32_REL_L2, f"{impl} T={t}: {result}"


@pytest.fixture(scope="module")
def fp8():
    block, plain, stored = _fp8_block()
    return weights_from_hf(block), plain, stored, block


@pytest.fixture(scope="module")
def mx():
    block, plain, stored = _mxfp4_block()
    return weights_from_hf(block), plain, stored, block


def test_fp8_codes_and_scales_arrive_bit_exact(fp8):
    weights, _, stored, block = fp8
    assert weights.spec.quant == "fp8-block128"
    for ours, (codes, scale) in ((weights.quant.w1, stored["gate_up_proj"]), (weights.quant.w2, stored["down_proj"])):
        assert _same_bits(ours.data, codes) and _same_bits(ours.scale, scale)
    torch.testing.assert_close(weights.w1, weights.quant.w1.dequantize(torch.float32), rtol=0, atol=0)
    assert not _same_bits(quantize_experts(weights.w1, weights.w2, "fp8-block128").w1.scale, weights.quant.w1.scale)
    declared = weights_from_hf(block, quantization_config=FP8_CONFIG)  # the config says it; the names agree
    assert _same_bits(declared.quant.w1.data, weights.quant.w1.data)


def test_fp8_module_on_dequantised_weights_matches_reference(fp8):
    weights, plain, _, _ = fp8
    _module_matches_reference(plain, weights)


def test_fp8_transformers_fp8experts_and_per_expert_checkpoint_layouts(fp8):
    """The same codes in transformers' own FP8Experts class, and per expert as DeepSeek-V3's checkpoint names them
    (experts.{e}.gate_proj.weight / .weight_scale_inv), give the same QuantizedExperts."""
    finegrained = pytest.importorskip("transformers.integrations.finegrained_fp8")
    import transformers

    weights, _, stored, block = fp8
    fused = _deepseek()
    fused.experts = finegrained.FP8Experts(fused.config, block_size=(128, 128))
    fused.load_state_dict(block.state_dict())
    per_expert = _deepseek()
    mlp_class = type(per_expert.shared_experts)
    config = per_expert.config
    per_expert.experts = nn.ModuleList(mlp_class(config, intermediate_size=128) for _ in range(6))
    (gate_up, gate_up_s), (down, down_s) = stored["gate_up_proj"], stored["down_proj"]
    for e, mlp in enumerate(per_expert.experts):
        rows = {"gate_proj": (gate_up[e, :128], gate_up_s[e, :1]), "up_proj": (gate_up[e, 128:], gate_up_s[e, 1:])}
        rows["down_proj"] = (down[e], down_s[e])
        for name, (codes, scale) in rows.items():
            _replace(getattr(mlp, name), "weight", codes.clone())
            _replace(getattr(mlp, name), "weight_scale_inv", scale.clone())
    for other in (fused, per_expert):
        other.gate.load_state_dict(block.gate.state_dict())
        other.shared_experts.load_state_dict(block.shared_experts.state_dict())
        converted = weights_from_hf(other, quantization_config=transformers.FineGrainedFP8Config())
        for name in ("w1", "w2"):
            ours, theirs = getattr(converted.quant, name), getattr(weights.quant, name)
            assert _same_bits(ours.data, theirs.data) and _same_bits(ours.scale, theirs.scale), (type(other), name)


def test_fp8_parity_gate(fp8, device, triton_device):
    assert {"shared", "router.groups"} <= fp8[0].spec.features()
    _gate(fp8[0], "naive_loop", device)
    _gate(fp8[0], "triton_grouped", triton_device)


def test_mxfp4_codes_and_scales_arrive_bit_exact(mx):
    weights, _, stored, _ = mx
    assert weights.spec.quant == "mxfp4" and weights.spec.expert.bias and weights.spec.expert.swiglu_limit == 1.0
    (gate_up, gate_up_s), (down, down_s) = stored["gate_up_proj"], stored["down_proj"]
    i = weights.spec.intermediate
    w1 = weights.quant.w1
    assert _same_bits(w1.data[:, :i], gate_up[:, 0::2]) and _same_bits(w1.data[:, i:], gate_up[:, 1::2])
    assert _same_bits(w1.scale[:, :i], gate_up_s[:, 0::2]) and _same_bits(w1.scale[:, i:], gate_up_s[:, 1::2])
    assert _same_bits(weights.quant.w2.data, down) and _same_bits(weights.quant.w2.scale, down_s)
    assert not _same_bits(quantize_experts(weights.w1, weights.w2, "mxfp4").w2.scale, down_s)


def test_mxfp4_module_on_dequantised_weights_matches_reference(mx):
    weights, plain, _, _ = mx
    _module_matches_reference(plain, weights)


def test_mxfp4_parity_gate(mx, device, triton_device):
    weights = mx[0]
    _gate(weights, "naive_loop", device)
    assert {"expert.bias", "expert.swiglu_limit"} <= weights.spec.features()
    _gate(weights, "triton_grouped", triton_device)


def test_wrong_scale_shapes_and_dtypes_are_named():
    block, _, _ = _fp8_block()
    _replace(block.experts, "gate_up_proj_scale_inv", torch.ones(6, 1, 2))
    with pytest.raises(MoEInputError, match=r"block\.experts\.gate_up_proj_scale_inv: expected \[6, 2, 2\]"):
        weights_from_hf(block)
    block, _, _ = _fp8_block()
    _replace(block.experts, "down_proj_scale_inv", block.experts.down_proj_scale_inv.detach().half())
    with pytest.raises(MoEInputError, match=r"block\.experts\.down_proj_scale_inv: .* torch\.float32"):
        weights_from_hf(block)
    block, _, _ = _mxfp4_block()
    block.experts.down_proj_scales = block.experts.down_proj_scales[:, :, :1].clone()
    with pytest.raises(MoEInputError, match=r"block\.experts\.down_proj_scales: expected \[5, 96, 2\]"):
        weights_from_hf(block)
    block, _, _ = _mxfp4_block()
    block.experts.gate_up_proj_scales[0, 0, 0] = 0xFF
    with pytest.raises(MoEInputError, match=r"block\.experts\.gate_up_proj_scales: .*NaN"):
        weights_from_hf(block)


def test_what_the_format_cannot_hold_is_refused():
    block, _, _ = _fp8_block(intermediate=20)  # gate's and up's partial 128-row blocks: two grids, not one
    with pytest.raises(MoEInputError, match=r"gate_up_proj_scale_inv: I=20 is not a multiple of 128"):
        weights_from_hf(block)
    block, _, _ = _fp8_block()
    with pytest.raises(MoEInputError, match=r"quantization_config\.weight_block_size"):
        weights_from_hf(block, quantization_config={**FP8_CONFIG, "weight_block_size": [64, 64]})
    with pytest.raises(MoEInputError, match=r"quantization_config\.activation_scheme"):
        weights_from_hf(block, quantization_config={**FP8_CONFIG, "activation_scheme": "static"})
    with pytest.raises(MoEInputError, match=r"quantization_config\.scale_fmt"):
        weights_from_hf(block, quantization_config={**FP8_CONFIG, "scale_fmt": "ue8m0"})
    with pytest.raises(MoEInputError, match=r"quantization_config\.quant_method"):
        weights_from_hf(block, quantization_config={"quant_method": "awq"})
    _replace(block.experts, "gate_up_proj_scale_inv", None)
    _replace(block.experts, "down_proj_scale_inv", None)  # e4m3 codes with no declared scales
    with pytest.raises(MoEInputError, match=r"block \(w1\): stored as torch\.float8_e4m3fn"):
        weights_from_hf(block)
    with pytest.raises(MoEInputError, match=r"block\.experts: expected a tensor attribute 'gate_up_proj_scale_inv'"):
        weights_from_hf(block, quantization_config=FP8_CONFIG)
    block, _, _ = _mxfp4_block()
    with pytest.raises(MoEInputError, match=r"block\.experts: fp8 experts in layout .*transposed=True"):
        weights_from_hf(block, quantization_config=FP8_CONFIG)  # the config contradicts the tensors
