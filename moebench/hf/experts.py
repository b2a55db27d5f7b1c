"""The routed experts of a transformers MoE block as canonical w1 [E, 2I, H] (gate rows, then up rows),
w2 [E, H, I], optional biases, and the ExpertSpec of their activation.

v5 fused experts (`@use_experts_implementation`, transformers/integrations/moe.py) declare their storage:
`is_transposed` (gate_up_proj [E, H, 2I] / down_proj [E, I, H] instead of [E, 2I, H] / [E, H, I]),
`is_concatenated` (gate|up halves, or interleaved g0,u0,g1,u1,...), `has_bias` (gate_up_proj_bias [E, 2I],
down_proj_bias [E, H]), `has_gate` and `has_post_expert_norm`. The layout is read from those declarations,
never guessed from the shapes (which cannot tell [E, 2I, H] from [E, H, 2I] when H = 2I: OLMoE's 2048 =
2 x 1024). Experts classes without them are known by name (LEGACY_LAYOUTS: Llama4TextExperts, and
GptOssExperts as transformers 4.x built it); any other undeclared class is read in transformers' default
layout. v4 per-expert modules (a ModuleList of gated MLPs) are stacked.

The activation: SiLU-gated (act_fn) for all families but gpt-oss, whose GptOssExperts._apply_gate is the
clamped SwiGLU (gate clamped above at `limit`, up to +-limit, (up + 1) * gate * sigmoid(alpha * gate)) with
alpha and limit read from the module (swiglu_alpha / swiglu_limit of the config).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moebench.errors import MoEInputError
from moebench.hf.common import check_silu, first_attr, mlp_weights, tensor
from moebench.spec import ExpertSpec


@dataclass(frozen=True)
class Layout:
    """How a fused experts module stores gate/up: transposed or not, gate|up halves or interleaved, biases."""

    transposed: bool = False
    concatenated: bool = True
    bias: bool = False


# transformers' own defaults for @use_experts_implementation, and the undecorated classes it documents
DEFAULT_LAYOUT = Layout()
LEGACY_LAYOUTS = {
    "Llama4TextExperts": Layout(transposed=True),  # torch.bmm(x, gate_up_proj [E, H, 2I]), then chunk(2)
    "GptOssExperts": Layout(transposed=True, concatenated=False, bias=True),  # x @ gate_up_proj, [..., ::2]
    # transformers' MXFP4 experts (integrations/mxfp4.py): gpt-oss's interleaved gate/up rows and biases
    "Mxfp4GptOssExperts": Layout(transposed=True, concatenated=False, bias=True),
}
# classes whose _apply_gate is not transformers' silu(gate) * up, and the ExpertSpec it states
_CLAMPED_SWIGLU_CLASSES = ("GptOssExperts", "Mxfp4GptOssExperts")
# classes whose own _apply_gate is silu(gate) * up unless one of these attributes is set: transformers' FP8Experts
# (integrations/finegrained_fp8.py: softcaps, the clamped SwiGLU's alpha, a clamp limit)
_PLAIN_UNLESS_SET = {"FP8Experts": ("gate_softcap", "up_softcap", "swiglu_alpha", "limit")}


@dataclass(frozen=True)
class ExpertParts:
    w1: torch.Tensor  # [E, 2I, H] gate rows then up rows
    w2: torch.Tensor  # [E, H, I]
    b1: torch.Tensor | None  # [E, 2I]
    b2: torch.Tensor | None  # [E, H]
    spec: ExpertSpec


def declared_layout(experts: nn.Module) -> Layout:
    """The storage a fused experts module declares (or its class is documented with)."""
    declared = [getattr(experts, name, None) for name in ("is_transposed", "is_concatenated", "has_bias")]
    if all(isinstance(v, bool) for v in declared):
        if getattr(experts, "has_post_expert_norm", False):
            raise MoEInputError("block.experts: has_post_expert_norm (a norm after each expert) is not in the spec")
        if getattr(experts, "has_gate", True) is not True:
            raise MoEInputError("block.experts: has_gate=False (non-gated experts) is not read by moebench.hf")
        return Layout(*declared)
    return LEGACY_LAYOUTS.get(type(experts).__name__, DEFAULT_LAYOUT)


def expert_spec(experts: nn.Module, bias: bool = False) -> ExpertSpec:
    """The ExpertSpec of the module's activation (and of its biases, when the layout has them)."""
    spec = _activation_spec(experts)
    return ExpertSpec(spec.swiglu_alpha, spec.swiglu_limit, spec.swiglu_up_offset, bias=True) if bias else spec


def _activation_spec(experts: nn.Module) -> ExpertSpec:
    if type(experts).__name__ in _CLAMPED_SWIGLU_CLASSES:
        alpha = first_attr([experts], ("alpha",), (int, float))
        limit = first_attr([experts], ("limit",), (int, float))
        if alpha is None or limit is None:
            raise MoEInputError("block.experts: gpt-oss experts without `alpha` / `limit`")
        return ExpertSpec(swiglu_alpha=float(alpha), swiglu_limit=float(limit), swiglu_up_offset=1.0)
    options = _PLAIN_UNLESS_SET.get(type(experts).__name__, ())
    for name in options:
        if getattr(experts, name, None) is not None:
            raise MoEInputError(f"block.experts.{name}: set on {type(experts).__name__}, not read by moebench.hf")
    apply_gate = getattr(type(experts), "_apply_gate", None)
    if not options and apply_gate is not None and getattr(apply_gate, "__name__", "") != "_default_apply_gate":
        raise MoEInputError(
            f"block.experts: {type(experts).__name__} has its own _apply_gate, which moebench.hf does not know"
        )
    check_silu(experts, "block.experts")
    return ExpertSpec()


def split_gate_up(t: torch.Tensor, concatenated: bool) -> torch.Tensor:
    """[..., 2I] in the module's order -> [..., 2I] as gate half then up half (last axis)."""
    return t if concatenated else torch.cat([t[..., 0::2], t[..., 1::2]], dim=-1)


def fused_experts(experts: nn.Module, num_experts: int, hidden: int) -> ExpertParts:
    """v5 fused experts (gate_up_proj / down_proj parameters) in the declared layout."""
    layout = declared_layout(experts)
    gate_up = tensor(experts, "gate_up_proj", "block.experts")
    down = tensor(experts, "down_proj", "block.experts")
    if layout.transposed:  # [E, H, 2I], [E, I, H]
        gate_up, down = gate_up.transpose(1, 2), down.transpose(1, 2)
    want = f"[E={num_experts}, H={hidden}, 2I]" if layout.transposed else f"[E={num_experts}, 2I, H={hidden}]"
    if gate_up.dim() != 3 or gate_up.shape[0] != num_experts or gate_up.shape[2] != hidden or gate_up.shape[1] % 2:
        shape = list(experts.gate_up_proj.shape)
        raise MoEInputError(f"block.experts.gate_up_proj: expected {want} ({layout}), got {shape}")
    intermediate = gate_up.shape[1] // 2
    if tuple(down.shape) != (num_experts, hidden, intermediate):
        raise MoEInputError(
            f"block.experts.down_proj: expected [E, H, I] = {[num_experts, hidden, intermediate]} after the "
            f"declared layout ({layout}), got {list(experts.down_proj.shape)}"
        )
    w1 = split_gate_up(gate_up.transpose(1, 2), layout.concatenated).transpose(1, 2)
    b1 = b2 = None
    if layout.bias:
        b1 = split_gate_up(tensor(experts, "gate_up_proj_bias", "block.experts"), layout.concatenated)
        b2 = tensor(experts, "down_proj_bias", "block.experts")
    return ExpertParts(w1.contiguous(), down.contiguous(), b1, b2, expert_spec(experts, layout.bias))


def per_expert_modules(experts: nn.Module, num_experts: int) -> ExpertParts:
    """v4 experts: a ModuleList of gated MLPs (w1/w3/w2 or gate_proj/up_proj/down_proj), stacked."""
    if len(experts) != num_experts:
        raise MoEInputError(f"block.experts: expected {num_experts} experts (router rows), got {len(experts)}")
    pairs = [mlp_weights(expert, f"block.experts[{i}]") for i, expert in enumerate(experts)]
    return ExpertParts(
        torch.stack([w1 for w1, _ in pairs]), torch.stack([w2 for _, w2 in pairs]), None, None, ExpertSpec()
    )


def read_experts(block: nn.Module, num_experts: int, hidden: int) -> ExpertParts:
    experts = getattr(block, "experts", None)
    if experts is None:
        raise MoEInputError("block: expected an `experts` attribute")
    if hasattr(experts, "gate_up_proj"):
        return fused_experts(experts, num_experts, hidden)
    if isinstance(experts, (nn.ModuleList, list, tuple)):
        return per_expert_modules(experts, num_experts)
    raise MoEInputError("block.experts: expected fused gate_up_proj/down_proj parameters or a ModuleList")
