"""The router of a transformers MoE block: its weights and the RouterSpec that states what it computes.

How a router scores is code, not data, so it is known per router class (ROUTER_KINDS, each entry read from
the class's forward in transformers 5.x, models/<family>/modeling_<family>.py); what it is configured with
is read from the module's attributes (then the block's, then the config's):

  softmax top-k      MixtralTopKRouter, MiniMaxTopKRouter (always renormalise); Qwen2Moe-, Qwen3Moe-,
                     Qwen3Next-, OlmoeTopKRouter (norm_topk_prob); a v4 nn.Linear gate (the block's
                     norm_topk_prob, renormalising when it has none: Mixtral v4).
  noaux_tc           DeepseekV3TopkRouter, Glm4MoeTopkRouter: sigmoid + e_score_correction_bias for the choice,
                     n_group / topk_group (num_group in v5), norm_topk_prob, routed_scaling_factor. Their
                     renormalisation divides by (sum + 1e-20): below fp64 resolution for sums of sigmoids.
  sigmoid + bias     MiniMaxM2TopKRouter: the correction bias lives on the block; always renormalises.
  softmax after top-k GptOssTopKRouter: Linear(H, E, bias=True) logits, softmax over the k chosen logits.
  Llama-4            Llama4Router (an nn.Linear): top-k on the logits, sigmoid of the chosen ones, no
                     renormalisation; Llama4TextMoe scales the expert's input by it (weight_on="input").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moebench.errors import MoEInputError
from moebench.hf.common import config_of, first_attr, optional_tensor, tensor
from moebench.spec import RouterSpec


@dataclass(frozen=True)
class RouterParts:
    """What the converter takes from a router: weight [E, H], optional bias [E] and selection bias [E]."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    selection_bias: torch.Tensor | None
    spec: RouterSpec
    top_k: int


def _renormalize(block: nn.Module, gate: nn.Module, default: bool | None) -> bool:
    value = first_attr([gate, block, config_of(gate, block)], ("norm_topk_prob",), bool)
    if value is None and default is None:
        raise MoEInputError(f"block.gate: no norm_topk_prob found for {type(gate).__name__}")
    return default if value is None else value


def _softmax_topk(block, gate, *, always_renormalize: bool = False):
    renormalize = True if always_renormalize else _renormalize(block, gate, default=True)
    return RouterSpec("softmax", renormalize=renormalize), None


def _always_renormalize(block, gate):
    return _softmax_topk(block, gate, always_renormalize=True)


def _noaux_tc(block, gate):
    owners = [gate, block, config_of(gate, block)]
    groups = first_attr(owners, ("num_group", "n_group"), int) or 1
    topk_groups = first_attr(owners, ("topk_group",), int) or 1
    scaling = first_attr(owners, ("routed_scaling_factor",), (int, float))
    spec = RouterSpec(
        "sigmoid",
        renormalize=_renormalize(block, gate, default=None),
        selection_bias=True,
        groups=groups,
        topk_groups=topk_groups,
        scaling=1.0 if scaling is None else float(scaling),
    )
    return spec, tensor(gate, "e_score_correction_bias", "block.gate")


def _minimax_m2(block, gate):
    return RouterSpec("sigmoid", renormalize=True, selection_bias=True), tensor(
        block, "e_score_correction_bias", "block"
    )


def _gpt_oss(block, gate):
    return RouterSpec("softmax", renormalize=False, softmax_after_topk=True, bias=True), None


def _llama4(block, gate):
    return RouterSpec("sigmoid", renormalize=False, weight_on="input"), None


ROUTER_KINDS = {
    "MixtralTopKRouter": _always_renormalize,
    "MiniMaxTopKRouter": _always_renormalize,
    "Qwen2MoeTopKRouter": _softmax_topk,
    "Qwen3MoeTopKRouter": _softmax_topk,
    "Qwen3NextTopKRouter": _softmax_topk,
    "OlmoeTopKRouter": _softmax_topk,
    "DeepseekV3TopkRouter": _noaux_tc,
    "Glm4MoeTopkRouter": _noaux_tc,
    "MiniMaxM2TopKRouter": _minimax_m2,
    "GptOssTopKRouter": _gpt_oss,
    "Llama4Router": _llama4,
}


def find_router(block: nn.Module) -> nn.Module:
    """block.gate (most families) or block.router (gpt-oss, Llama-4)."""
    for name in ("gate", "router"):
        module = getattr(block, name, None)
        if isinstance(module, nn.Module) and isinstance(getattr(module, "weight", None), torch.Tensor):
            return module
    raise MoEInputError("block: expected a `gate` or `router` with a 2-D `weight` [E, H] (HF MoE block)")


def read_router(block: nn.Module) -> RouterParts:
    """The router of `block`, by its class (ROUTER_KINDS) or, for a v4 nn.Linear gate, as softmax top-k."""
    gate = find_router(block)
    name = type(gate).__name__
    kind = ROUTER_KINDS.get(name)
    if kind is None:
        if type(gate) is not nn.Linear:
            raise MoEInputError(
                f"block.gate: unknown router class {name}; moebench.hf reads {', '.join(sorted(ROUTER_KINDS))} "
                "and v4 nn.Linear gates"
            )
        kind = _softmax_topk
    weight = tensor(gate, "weight", "block.gate")
    if weight.dim() != 2:
        raise MoEInputError(f"block.gate.weight: expected [E, H], got {list(weight.shape)}")
    spec, selection_bias = kind(block, gate)
    bias = optional_tensor(gate, "bias")
    if bias is not None and not spec.bias:
        raise MoEInputError(f"block.gate: {name} with a bias is not what transformers builds; not supported")
    if spec.bias and bias is None:
        raise MoEInputError(f"block.gate: {name} must have a bias [E]")
    top_k = first_attr([gate, block, config_of(gate, block)], ("top_k", "num_experts_per_tok"), int)
    if top_k is None:
        raise MoEInputError("block: no `top_k` found on block.gate or block")
    return RouterParts(weight, bias, selection_bias, spec, top_k)
