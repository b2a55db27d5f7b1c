"""Conversion from Hugging Face transformers MoE blocks to moebench's canonical weights.

Supported (transformers is optional; nothing here imports it):
  * v5 fused experts: `block.experts.gate_up_proj` [E, 2I, H] (gate rows then up rows) and
    `block.experts.down_proj` [E, H, I] (Mixtral, Qwen3-MoE, OLMoE in transformers >= 5); the
    transposed storage [E, H, 2I] / [E, I, H] is recognised by shape and transposed back.
  * v4 per-expert modules: `block.experts[i]` with `w1`/`w3`/`w2` (Mixtral) or
    `gate_proj`/`up_proj`/`down_proj` (Qwen-MoE, OLMoE) nn.Linear layers.
The router is `block.gate` (an nn.Linear or a v5 TopKRouter with `.weight` [E, H]); top-k is read
from `gate.top_k` / `block.top_k`; renormalisation from `norm_topk_prob` (absent: Mixtral, which
always renormalises). Shared experts (Qwen2-MoE) and biased or clamped experts (gpt-oss) are not
the plain layer this project benchmarks and raise MoEInputError.
"""

from __future__ import annotations

import torch
from torch import nn

from moebench.errors import MoEInputError
from moebench.spec import MoESpec, RouterSpec, parse_dtype
from moebench.weights import MoEWeights


def _router_weight(block: nn.Module) -> torch.Tensor:
    gate = getattr(block, "gate", None)
    weight = getattr(gate, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise MoEInputError("block: expected a `gate` router with a 2-D `weight` [E, H] (HF MoE block)")
    if getattr(gate, "bias", None) is not None:
        raise MoEInputError("block.gate: routers with a bias are not supported")
    return weight.detach()


def _top_k(block: nn.Module) -> int:
    for owner in (getattr(block, "gate", None), block):
        value = getattr(owner, "top_k", None)
        if isinstance(value, int):
            return value
    raise MoEInputError("block: no `top_k` found on block.gate or block")


def _renormalize(block: nn.Module) -> bool:
    for owner in (getattr(block, "gate", None), block):
        value = getattr(owner, "norm_topk_prob", None)
        if isinstance(value, bool):
            return value
    return True  # Mixtral's router always renormalises and has no flag


def _is_silu(act: object) -> bool:
    if isinstance(act, nn.SiLU):
        return True
    name = type(act).__name__.lower()
    return "silu" in name or "swish" in name or getattr(act, "__name__", "") == "silu"


def _check_activation(experts: nn.Module) -> None:
    act = getattr(experts, "act_fn", None)
    if act is not None and not _is_silu(act):
        raise MoEInputError(
            f"block.experts.act_fn: only SiLU-gated (swiglu) experts are supported, got {type(act).__name__}"
        )


def _fused_expert_weights(experts: nn.Module, num_experts: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    gate_up = experts.gate_up_proj.detach()
    down = experts.down_proj.detach()
    if getattr(experts, "gate_up_proj_bias", None) is not None or getattr(experts, "down_proj_bias", None) is not None:
        raise MoEInputError("block.experts: experts with biases (gpt-oss style) are not supported")
    if gate_up.dim() != 3 or gate_up.shape[0] != num_experts:
        raise MoEInputError(f"block.experts.gate_up_proj: expected [E={num_experts}, 2I, H], got {list(gate_up.shape)}")
    if gate_up.shape[2] != hidden and gate_up.shape[1] == hidden:  # stored transposed [E, H, 2I]
        gate_up, down = gate_up.transpose(1, 2), down.transpose(1, 2)
    if gate_up.shape[2] != hidden or gate_up.shape[1] % 2:
        raise MoEInputError(f"block.experts.gate_up_proj: expected [E, 2I, H={hidden}], got {list(gate_up.shape)}")
    intermediate = gate_up.shape[1] // 2
    if tuple(down.shape) != (num_experts, hidden, intermediate):
        raise MoEInputError(
            f"block.experts.down_proj: expected [{num_experts}, {hidden}, {intermediate}], got {list(down.shape)}"
        )
    return gate_up.contiguous(), down.contiguous()


_PER_EXPERT_NAMES = (("w1", "w3", "w2"), ("gate_proj", "up_proj", "down_proj"))


def _per_expert_weights(experts: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    first = experts[0]
    for gate_name, up_name, down_name in _PER_EXPERT_NAMES:
        if all(hasattr(first, n) for n in (gate_name, up_name, down_name)):
            break
    else:
        raise MoEInputError("block.experts[i]: expected w1/w3/w2 or gate_proj/up_proj/down_proj linear layers")
    for expert in experts:
        _check_activation(expert)
        for n in (gate_name, up_name, down_name):
            if getattr(getattr(expert, n), "bias", None) is not None:
                raise MoEInputError(f"block.experts[i].{n}: experts with biases are not supported")
    w1 = torch.stack([torch.cat([getattr(e, gate_name).weight, getattr(e, up_name).weight]) for e in experts])
    w2 = torch.stack([getattr(e, down_name).weight for e in experts])
    return w1.detach(), w2.detach()


def weights_from_hf(block: nn.Module, dtype: str | torch.dtype | None = None) -> MoEWeights:
    """Canonical MoEWeights (and their MoESpec) from a transformers sparse-MoE block.

    dtype: the dtype of the result (default: the block's parameter dtype).
    """
    if not isinstance(block, nn.Module):
        raise MoEInputError(f"block: expected a torch.nn.Module (an HF sparse-MoE block), got {type(block).__name__}")
    if getattr(block, "shared_expert", None) is not None or getattr(block, "shared_experts", None) is not None:
        raise MoEInputError("block: shared experts (Qwen2-MoE / DeepSeek style) are not supported")
    router = _router_weight(block)
    num_experts, hidden = router.shape
    experts = getattr(block, "experts", None)
    if experts is None:
        raise MoEInputError("block: expected an `experts` attribute")
    if hasattr(experts, "gate_up_proj"):
        _check_activation(experts)
        w1, w2 = _fused_expert_weights(experts, num_experts, hidden)
    elif isinstance(experts, (nn.ModuleList, list, tuple)):
        if len(experts) != num_experts:
            raise MoEInputError(f"block.experts: expected {num_experts} experts (router rows), got {len(experts)}")
        w1, w2 = _per_expert_weights(experts)
    else:
        raise MoEInputError("block.experts: expected fused gate_up_proj/down_proj parameters or a ModuleList")
    out_dtype = parse_dtype(dtype) if dtype is not None else w1.dtype
    spec = MoESpec(
        num_experts,
        _top_k(block),
        hidden,
        w2.shape[2],
        activation="swiglu",
        dtype=out_dtype,
        router=RouterSpec("softmax", renormalize=_renormalize(block)),
    )
    return MoEWeights(spec, router.to(out_dtype).contiguous(), w1.to(out_dtype), w2.to(out_dtype))
