"""The shared (always-on) experts of a transformers MoE block, as shared_w1 [1, 2I_s, H], shared_w2 [1, H, I_s]
and the per-token gate shared_gate [1, H].

  block.shared_expert        Qwen2-MoE, Qwen3-Next (Qwen*MLP of shared_expert_intermediate_size), Llama-4
                             (Llama4TextMLP of intermediate_size): one gated MLP.
  block.shared_expert_gate   Qwen2-MoE, Qwen3-Next: Linear(H, 1, bias=False); the shared output is scaled
                             by sigmoid(x . w) per token.
  block.shared_experts       DeepSeek-V3, GLM-4.5: ONE gated MLP of n_shared_experts * moe_intermediate_size
                             (transformers builds it so), hence SharedSpec(count=1, that size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moebench.errors import MoEInputError
from moebench.hf.common import linear_weight, mlp_weights
from moebench.spec import SharedSpec


@dataclass(frozen=True)
class SharedParts:
    w1: torch.Tensor | None  # [1, 2I_s, H]
    w2: torch.Tensor | None  # [1, H, I_s]
    gate: torch.Tensor | None  # [1, H]
    spec: SharedSpec


NO_SHARED = SharedParts(None, None, None, SharedSpec())


def read_shared(block: nn.Module, hidden: int) -> SharedParts:
    names = [n for n in ("shared_expert", "shared_experts") if getattr(block, n, None) is not None]
    if not names:
        if getattr(block, "shared_expert_gate", None) is not None:
            raise MoEInputError("block.shared_expert_gate: a gate without a shared_expert")
        return NO_SHARED
    if len(names) > 1:
        raise MoEInputError("block: both shared_expert and shared_experts; expected one")
    w1, w2 = mlp_weights(getattr(block, names[0]), f"block.{names[0]}")
    if w1.shape[1] != hidden:
        raise MoEInputError(f"block.{names[0]}: expected hidden size {hidden}, got {w1.shape[1]}")
    gate = None
    if getattr(block, "shared_expert_gate", None) is not None:
        gate = linear_weight(block, "shared_expert_gate", "block")
        if tuple(gate.shape) != (1, hidden):
            raise MoEInputError(f"block.shared_expert_gate.weight: expected [1, {hidden}], got {list(gate.shape)}")
    spec = SharedSpec(1, w2.shape[1], gated=gate is not None)
    return SharedParts(w1[None], w2[None], gate, spec)
