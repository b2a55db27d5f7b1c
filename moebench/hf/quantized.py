"""Routed experts stored quantised, as released checkpoints keep them, read into QuantizedExperts bit for bit.

The format is declared, never guessed from shapes: by the `quantization_config` (the argument of
weights_from_hf, else the block's `config.quantization_config`), else by the tensors' names.

fp8-block128, DeepSeek-V3's FP8 experts. quantization_config {"quant_method": "fp8", "fmt": "e4m3",
"weight_block_size": [128, 128], "activation_scheme": "dynamic"} (DeepSeek-V3's config.json), or
`*_scale_inv` tensors. Each matrix is float8_e4m3fn codes [N, K] with fp32 `scale_inv`
[ceil(N/128), ceil(K/128)], dequantised as code * scale_inv (the name notwithstanding: DeepSeek-V3's
inference/kernel.py `weight_dequant`, transformers' integrations/finegrained_fp8.py). Read from
  fused (transformers' FP8Experts):  experts.gate_up_proj [E, 2I, H] + gate_up_proj_scale_inv, gate rows then
                                     up rows, each half with its own block grid; down_proj [E, H, I] +
                                     down_proj_scale_inv [E, ceil(H/128), ceil(I/128)]
  per expert (the checkpoint):       experts[e].{gate,up,down}_proj.weight + .weight_scale_inv
Canonical w1 [E, 2I, H] has one 128-row block grid over its gate and up rows together, so I must be a
multiple of 128 (gate's last block must end where up's first begins); H and I need not be otherwise
(partial blocks). Activations are quantised at run time (activation_scheme "dynamic"); "static" is refused.

mxfp4, gpt-oss's experts. quantization_config {"quant_method": "mxfp4"}, or `*_blocks` / `*_scales`
tensors: gate_up_proj_blocks uint8 [E, 2I, H/32, 16] with gate_up_proj_scales uint8 (E8M0) [E, 2I, H/32],
down_proj_blocks [E, H, I/32, 16] with down_proj_scales [E, H, I/32] ([out, in] rows, whatever the bf16
module's orientation; transformers' integrations/mxfp4.py `convert_moe_packed_tensors`), gate/up rows in
the experts class's declared order (gpt-oss: interleaved), biases as the unquantised module keeps them.

Codes and scales are reshaped and their rows reordered, nothing else: no dequantise-and-requantise.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from moebench.errors import MoEInputError
from moebench.hf.common import MLP_NAMES, config_of, optional_tensor, tensor
from moebench.hf.experts import ExpertParts, declared_layout, expert_spec, split_gate_up
from moebench.quant.blocks import cdiv
from moebench.quant.experts import QuantizedExperts, QuantizedTensor
from moebench.quant.formats import FP8_BLOCK128, MXFP4, QuantFormat
from moebench.quant.mxfp4 import E8M0_NAN, from_gpt_oss_blocks

WHERE = "block.experts"
# fp8 config keys and the values fp8-block128 states (None: absent); transformers' FineGrainedFP8Config adds
# scale_fmt ("ue8m0": power-of-two scales, activations' too) and expert_dtype ("fp4": packed FP4 experts)
_FP8_CONFIG = {"fmt": ("e4m3",), "activation_scheme": ("dynamic",), "scale_fmt": ("float",), "expert_dtype": ("fp8",)}


def declared_format(block: nn.Module, quantization_config: Mapping | None) -> QuantFormat | None:
    """The format the experts are declared to be stored in, or None for unquantised experts."""
    experts = getattr(block, "experts", None)
    config = quantization_config
    where = "quantization_config"
    if config is None:
        config = getattr(config_of(block, experts), "quantization_config", None)
        where = "block.config.quantization_config"
    if config is not None:
        return _format_of_config(config, where)  # None when the config says the weights were dequantised
    names = {name for name, _ in _named_tensors(experts)}
    if any(name.endswith("_scale_inv") for name in names):
        return FP8_BLOCK128
    if any(name.endswith(("_blocks", "_scales")) for name in names):
        return MXFP4
    return None


def _named_tensors(module: nn.Module | None) -> list[tuple[str, torch.Tensor]]:
    if not isinstance(module, nn.Module):
        return []
    return [*module.named_parameters(), *module.named_buffers()]


def _format_of_config(config: object, where: str) -> QuantFormat | None:
    if not isinstance(config, Mapping):
        config = config.to_dict() if hasattr(config, "to_dict") else vars(config)
    if config.get("dequantize") is True:  # transformers dequantised the checkpoint as it loaded it
        return None
    method = config.get("quant_method")
    if method == "mxfp4":
        return MXFP4
    if method != "fp8":
        raise MoEInputError(f"{where}.quant_method: expected 'fp8' or 'mxfp4', got {method!r}")
    block = config.get("weight_block_size")
    if block is None or list(block) != list(FP8_BLOCK128.block):
        raise MoEInputError(f"{where}.weight_block_size: expected [128, 128] (fp8-block128), got {block!r}")
    for key, allowed in _FP8_CONFIG.items():
        if config.get(key) not in (None, *allowed):
            raise MoEInputError(f"{where}.{key}: expected one of {list(allowed)}, got {config.get(key)!r}")
    return FP8_BLOCK128


def read_quantized_experts(
    block: nn.Module, num_experts: int, hidden: int, fmt: QuantFormat
) -> tuple[ExpertParts, QuantizedExperts]:
    """The experts' codes and scales as QuantizedExperts in the canonical layout, and their ExpertParts
    with w1/w2 dequantised in fp32 (biases and activation as the module states them)."""
    experts = getattr(block, "experts", None)
    if experts is None:
        raise MoEInputError("block: expected an `experts` attribute")
    if fmt == MXFP4:
        quant, b1, b2, spec = _mxfp4_experts(experts, num_experts, hidden)
    elif isinstance(experts, (nn.ModuleList, list, tuple)):
        quant, b1, b2, spec = _fp8_per_expert(experts, num_experts, hidden)
    else:
        quant, b1, b2, spec = _fp8_fused(experts, num_experts, hidden)
    w1, w2 = quant.dequantize(torch.float32)
    return ExpertParts(w1, w2, b1, b2, spec), quant


def _checked(t: torch.Tensor, where: str, shape: tuple[int, ...], dtype: torch.dtype, what: str) -> torch.Tensor:
    if tuple(t.shape) != shape or t.dtype != dtype:
        raise MoEInputError(f"{where}: expected {list(shape)} {dtype} ({what}), got {list(t.shape)} {t.dtype}")
    return t


def _fp8_matrix(codes: torch.Tensor, scale: torch.Tensor, where: str, lead: tuple[int, ...], n: int, k: int):
    """(codes [..., N, K] e4m3, scale_inv [..., ceil(N/128), ceil(K/128)] fp32), checked; `where` names codes."""
    rows, cols = FP8_BLOCK128.block
    _checked(codes, where, (*lead, n, k), FP8_BLOCK128.code_dtype, "e4m3 codes")
    _checked(scale, f"{where}_scale_inv", (*lead, cdiv(n, rows), cdiv(k, cols)), torch.float32, "one per 128x128")
    return codes, scale


def _check_halves(intermediate: int, where: str) -> None:
    """Gate's and up's block grids, stacked, are w1's one grid only when I is a multiple of 128."""
    if intermediate % FP8_BLOCK128.block[0]:
        raise MoEInputError(
            f"{where}: I={intermediate} is not a multiple of 128, so gate's last 128-row block and up's first "
            "would share one block of fp8-block128's w1 [gate; up]; refused rather than re-quantised"
        )


def _fp8_quantized(gate_up: tuple, down: tuple, num_experts: int, hidden: int, intermediate: int):
    """QuantizedExperts from gate|up (each half its own block grid) and down codes with their scales."""
    w1 = QuantizedTensor(FP8_BLOCK128, (num_experts, 2 * intermediate, hidden), *gate_up)
    w2 = QuantizedTensor(FP8_BLOCK128, (num_experts, hidden, intermediate), *down)
    return QuantizedExperts(FP8_BLOCK128, w1, w2)


def _fp8_fused(experts: nn.Module, num_experts: int, hidden: int):
    layout = declared_layout(experts)
    if layout.transposed or not layout.concatenated or layout.bias:
        raise MoEInputError(f"{WHERE}: fp8 experts in layout {layout}; read: [E, 2I, H] gate|up halves, no bias")
    codes, down = tensor(experts, "gate_up_proj", WHERE), tensor(experts, "down_proj", WHERE)
    if down.dim() != 3:
        raise MoEInputError(f"{WHERE}.down_proj: expected [E, H, I] e4m3 codes, got {list(down.shape)}")
    intermediate = down.shape[2]
    scales = [tensor(experts, f"{name}_scale_inv", WHERE) for name in ("gate_up_proj", "down_proj")]
    _check_halves(intermediate, f"{WHERE}.gate_up_proj_scale_inv")
    gate_up = _fp8_matrix(codes, scales[0], f"{WHERE}.gate_up_proj", (num_experts,), 2 * intermediate, hidden)
    down = _fp8_matrix(down, scales[1], f"{WHERE}.down_proj", (num_experts,), hidden, intermediate)
    return _fp8_quantized(gate_up, down, num_experts, hidden, intermediate), None, None, expert_spec(experts)


def _fp8_linear(mlp: nn.Module, name: str, where: str, n: int | None, k: int):
    """An FP8 linear layer's (weight e4m3 [N, K], weight_scale_inv); N is read from the weight when None."""
    layer = getattr(mlp, name, None)
    where = f"{where}.{name}"
    if getattr(layer, "bias", None) is not None:
        raise MoEInputError(f"{where}: has a bias, which moebench's spec does not state for this layer")
    codes = tensor(layer, "weight", where)
    scale = tensor(layer, "weight_scale_inv", where)
    n = codes.shape[0] if n is None and codes.dim() == 2 else n
    return _fp8_matrix(codes, scale, f"{where}.weight", (), n, k)


def _fp8_per_expert(experts, num_experts: int, hidden: int):
    """v4 experts / DeepSeek-V3's checkpoint: per expert gate_proj, up_proj, down_proj FP8 linear layers."""
    if len(experts) != num_experts:
        raise MoEInputError(f"{WHERE}: expected {num_experts} experts (router rows), got {len(experts)}")
    gate_ups, downs = [], []
    for e, mlp in enumerate(experts):
        where = f"{WHERE}[{e}]"
        names = next((n for n in MLP_NAMES if all(hasattr(mlp, p) for p in n)), None)
        if names is None:
            raise MoEInputError(f"{where}: expected w1/w3/w2 or gate_proj/up_proj/down_proj linear layers")
        expert_spec(mlp)  # SiLU-gated, as every per-expert MLP here
        gate = _fp8_linear(mlp, names[0], where, None, hidden)
        intermediate = gate[0].shape[0]
        _check_halves(intermediate, f"{where}.{names[0]}.weight_scale_inv")
        up = _fp8_linear(mlp, names[1], where, intermediate, hidden)
        gate_ups.append([torch.cat(pair) for pair in zip(gate, up, strict=True)])
        downs.append(_fp8_linear(mlp, names[2], where, hidden, intermediate))
    gate_up = tuple(torch.stack(parts) for parts in zip(*gate_ups, strict=True))
    down = tuple(torch.stack(parts) for parts in zip(*downs, strict=True))
    quant = _fp8_quantized(gate_up, down, num_experts, hidden, down[0].shape[2])
    return quant, None, None, expert_spec(experts[0])


def _mxfp4_matrix(experts: nn.Module, name: str, num_experts: int, k: int, n: int | None):
    """`<name>_blocks` [E, N, K/32, 16] and `<name>_scales` [E, N, K/32] -> (packed codes [E, N, K/2], scales)."""
    where = f"{WHERE}.{name}"
    blocks = tensor(experts, f"{name}_blocks", WHERE)
    if blocks.dim() == 4 and n is None:
        n = blocks.shape[1]
    groups = k // MXFP4.group_size
    _checked(blocks, f"{where}_blocks", (num_experts, n, groups, 16), torch.uint8, "32 e2m1 codes in 16 bytes")
    scales = tensor(experts, f"{name}_scales", WHERE)
    _checked(scales, f"{where}_scales", (num_experts, n, groups), torch.uint8, "one e8m0 byte per 32")
    if bool((scales == E8M0_NAN).any()):
        raise MoEInputError(f"{where}_scales: holds the e8m0 NaN byte 0xFF")
    return from_gpt_oss_blocks(blocks), scales


def _mxfp4_experts(experts: nn.Module, num_experts: int, hidden: int):
    if hidden % MXFP4.group_size:
        raise MoEInputError(f"{WHERE}.gate_up_proj_blocks: mxfp4 needs H to be a multiple of 32, got {hidden}")
    layout = declared_layout(experts)
    gate_up = _mxfp4_matrix(experts, "gate_up_proj", num_experts, hidden, None)
    intermediate = gate_up[0].shape[1] // 2
    if intermediate % MXFP4.group_size or gate_up[0].shape[1] % 2:
        raise MoEInputError(
            f"{WHERE}.gate_up_proj_blocks: 2I={gate_up[0].shape[1]} rows; mxfp4 needs I to be a multiple of 32"
        )
    down = _mxfp4_matrix(experts, "down_proj", num_experts, intermediate, hidden)
    if not layout.concatenated:  # interleaved rows g0, u0, g1, ...: a row permutation of codes and scales alike
        gate_up = tuple(split_gate_up(t.transpose(1, -1), False).transpose(1, -1) for t in gate_up)
    w1 = QuantizedTensor(MXFP4, (num_experts, 2 * intermediate, hidden), *(t.contiguous() for t in gate_up))
    w2 = QuantizedTensor(MXFP4, (num_experts, hidden, intermediate), *down)
    b1 = b2 = None
    if layout.bias:
        b1 = split_gate_up(tensor(experts, "gate_up_proj_bias", WHERE), layout.concatenated)
        b2 = tensor(experts, "down_proj_bias", WHERE)
    elif optional_tensor(experts, "gate_up_proj_bias") is not None:
        raise MoEInputError(f"{WHERE}.gate_up_proj_bias: present, but the experts class declares no biases")
    return QuantizedExperts(MXFP4, w1, w2), b1, b2, expert_spec(experts, layout.bias)
