"""Each family's real transformers MoE block, built from a small config with seeded random weights.

Sizes are not multiples of 16; OLMoE and gpt-oss have H = 2I (the case shapes alone cannot read: gpt-oss
stores its experts transposed); biases and correction biases are non-zero; gpt-oss's clamp limit is 1.0
(not 7.0) so it acts on these N(0, 1)-sized pre-activations. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


def _gate_routing(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights [T, k], ids [T, k]) from a router returning (logits, weights, ids): most families."""
    _, weights, ids = block.gate(x)
    return weights, ids


def _gpt_oss_routing(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, weights, ids = block.router(x)
    return weights, ids


def _minimax_m2_routing(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, weights, ids = block.gate(x, block.e_score_correction_bias)
    return weights, ids


def _llama4_routing(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores, logits = block.router(x)  # scores [T, E]: sigmoid of the chosen logits, 0 elsewhere
    ids = torch.topk(logits, block.router.top_k, dim=1).indices
    return scores.gather(1, ids), ids


@dataclass(frozen=True)
class Family:
    name: str
    hf_class: str  # the block's transformers class
    make: Callable[[], nn.Module]  # the block, fp32, random weights not yet drawn
    routing: Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = _gate_routing
    # the module's own choice: (weights [T, k], ids [T, k]) on x [T, H]


def _block(module_path: str, class_name: str, config_name: str, **config) -> nn.Module:
    import importlib

    import transformers

    config = getattr(transformers, config_name)(**config)
    config._experts_implementation = "eager"  # the modeling file's own loop over experts
    return getattr(importlib.import_module(f"transformers.models.{module_path}"), class_name)(config)


def _scale(name: str, t: torch.Tensor) -> float:
    """Draw scale per tensor: router/expert matrices ~ fan-in^-0.5; biases small but not zero; the correction
    bias about the gaps between sigmoid scores, so it changes choices."""
    if name.endswith("e_score_correction_bias"):
        return 0.1
    if t.dim() == 1 or name.endswith("_bias"):
        return 0.3
    return t.shape[-1] ** -0.5


def randomize(block: nn.Module, seed: int = 0) -> nn.Module:
    """Every floating parameter and buffer drawn N(0, scale^2) from a seeded generator; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*block.named_parameters(), *block.named_buffers()]:
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen) * _scale(name, t))
    return block.eval()


def run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's own forward on x [T, H] -> [T, H] (gpt-oss and Llama-4 return a tuple: its first item)."""
    with torch.no_grad():
        out = block(x[None])
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(x.shape)


def deepseek_v3(**sizes) -> nn.Module:
    """DeepSeek-V3's block at the family's sizes, or with some of them changed (`sizes`)."""
    config = dict(hidden_size=44, moe_intermediate_size=20, n_routed_experts=12, num_experts_per_tok=3)
    config |= dict(n_shared_experts=1, n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True)
    return _block("deepseek_v3.modeling_deepseek_v3", "DeepseekV3MoE", "DeepseekV3Config", **{**config, **sizes})


def gpt_oss(**sizes) -> nn.Module:
    """gpt-oss's block at the family's sizes, or with some of them changed (`sizes`)."""
    config = dict(hidden_size=40, intermediate_size=20, num_local_experts=5, num_experts_per_tok=2, swiglu_limit=1.0)
    return _block("gpt_oss.modeling_gpt_oss", "GptOssMLP", "GptOssConfig", **{**config, **sizes})


FAMILIES = [
    Family(
        "mixtral",
        "MixtralSparseMoeBlock",
        lambda: _block(
            "mixtral.modeling_mixtral",
            "MixtralSparseMoeBlock",
            "MixtralConfig",
            hidden_size=36,
            intermediate_size=20,
            num_local_experts=5,
            num_experts_per_tok=2,
        ),
    ),
    Family(
        "qwen2_moe",
        "Qwen2MoeSparseMoeBlock",
        lambda: _block(
            "qwen2_moe.modeling_qwen2_moe",
            "Qwen2MoeSparseMoeBlock",
            "Qwen2MoeConfig",
            hidden_size=36,
            moe_intermediate_size=20,
            shared_expert_intermediate_size=28,
            num_experts=6,
            num_experts_per_tok=2,
            norm_topk_prob=False,
        ),
    ),
    Family(
        "qwen3_moe",
        "Qwen3MoeSparseMoeBlock",
        lambda: _block(
            "qwen3_moe.modeling_qwen3_moe",
            "Qwen3MoeSparseMoeBlock",
            "Qwen3MoeConfig",
            hidden_size=28,
            moe_intermediate_size=20,
            num_experts=6,
            num_experts_per_tok=3,
            norm_topk_prob=True,
        ),
    ),
    Family(
        "qwen3_next",
        "Qwen3NextSparseMoeBlock",
        lambda: _block(
            "qwen3_next.modeling_qwen3_next",
            "Qwen3NextSparseMoeBlock",
            "Qwen3NextConfig",
            hidden_size=36,
            moe_intermediate_size=20,
            shared_expert_intermediate_size=24,
            num_experts=8,
            num_experts_per_tok=3,
            norm_topk_prob=True,
        ),
    ),
    Family(  # H = 2I, as in OLMoE-1B-7B (2048 = 2 x 1024)
        "olmoe",
        "OlmoeSparseMoeBlock",
        lambda: _block(
            "olmoe.modeling_olmoe",
            "OlmoeSparseMoeBlock",
            "OlmoeConfig",
            hidden_size=40,
            intermediate_size=20,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=False,
        ),
    ),
    Family(
        "deepseek_v3",
        "DeepseekV3MoE",
        deepseek_v3,
    ),
    Family(  # two shared experts, built by transformers as one MLP of 2 x moe_intermediate_size
        "glm4_moe",
        "Glm4MoeMoE",
        lambda: _block(
            "glm4_moe.modeling_glm4_moe",
            "Glm4MoeMoE",
            "Glm4MoeConfig",
            hidden_size=36,
            moe_intermediate_size=20,
            n_routed_experts=8,
            num_experts_per_tok=2,
            n_shared_experts=2,
            n_group=1,
            topk_group=1,
            routed_scaling_factor=1.5,
            norm_topk_prob=True,
        ),
    ),
    Family(  # H = 2I with transposed, interleaved storage: only the declared layout reads it right
        "gpt_oss",
        "GptOssMLP",
        gpt_oss,
        _gpt_oss_routing,
    ),
    Family(
        "llama4",
        "Llama4TextMoe",
        lambda: _block(
            "llama4.modeling_llama4",
            "Llama4TextMoe",
            "Llama4TextConfig",
            hidden_size=36,
            intermediate_size=20,
            intermediate_size_mlp=44,
            num_local_experts=4,
            num_experts_per_tok=1,
        ),
        _llama4_routing,
    ),
    Family(
        "minimax_m2",
        "MiniMaxM2SparseMoeBlock",
        lambda: _block(
            "minimax_m2.modeling_minimax_m2",
            "MiniMaxM2SparseMoeBlock",
            "MiniMaxM2Config",
            hidden_size=36,
            intermediate_size=20,
            num_local_experts=6,
            num_experts_per_tok=2,
        ),
        _minimax_m2_routing,
    ),
    Family(
        "minimax",
        "MiniMaxSparseMoeBlock",
        lambda: _block(
            "minimax.modeling_minimax",
            "MiniMaxSparseMoeBlock",
            "MiniMaxConfig",
            hidden_size=36,
            intermediate_size=20,
            num_local_experts=4,
            num_experts_per_tok=2,
        ),
    ),
]
FAMILY = {f.name: f for f in FAMILIES}
