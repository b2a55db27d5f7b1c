"""Conversion from Hugging Face transformers MoE blocks to moebench's canonical weights and spec.

    weights = moebench.hf.weights_from_hf(model.model.layers[i].mlp)       # MoEWeights; .spec is the layer

Families (transformers >= 5 fused experts, and the v4 per-expert ModuleList where transformers 4.x had one):

| family | block class | router | experts | shared |
|---|---|---|---|---|
| Mixtral | MixtralSparseMoeBlock | softmax, renormalised | fused / v4 w1,w3,w2 | - |
| MiniMax-Text-01 | MiniMaxSparseMoeBlock | softmax, renormalised | fused / v4 w1,w3,w2 | - |
| MiniMax-M2 | MiniMaxM2SparseMoeBlock | sigmoid + block.e_score_correction_bias, renormalised | fused | - |
| Qwen2-MoE | Qwen2MoeSparseMoeBlock | softmax, norm_topk_prob | fused / v4 | shared_expert + sigmoid gate |
| Qwen3-MoE | Qwen3MoeSparseMoeBlock | softmax, norm_topk_prob | fused / v4 | - |
| Qwen3-Next | Qwen3NextSparseMoeBlock | softmax, norm_topk_prob | fused / v4 | shared_expert + sigmoid gate |
| OLMoE | OlmoeSparseMoeBlock | softmax, norm_topk_prob | fused / v4 | - |
| DeepSeek-V3 | DeepseekV3MoE | noaux_tc: sigmoid + correction bias, groups, scaling | fused / v4 | shared_experts |
| GLM-4.5 | Glm4MoeMoE | as DeepSeek-V3 | fused / v4 | shared_experts |
| gpt-oss | GptOssMLP | router bias, softmax of the k chosen logits | transposed, interleaved, biased, clamped | - |
| Llama-4 | Llama4TextMoe | sigmoid of the top-k logit, scales the expert's input | transposed | shared_expert |

What is read from where: moebench/hf/routers.py (router classes and their attributes), moebench/hf/experts.py
(declared storage layout, activation), moebench/hf/shared.py (shared experts). transformers is never imported.
A block whose computation the spec cannot state raises MoEInputError with the reason.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from moebench.errors import MoEInputError
from moebench.hf.experts import read_experts
from moebench.hf.routers import read_router
from moebench.hf.shared import read_shared
from moebench.spec import MoESpec, parse_dtype
from moebench.weights import MoEWeights

__all__ = ["weights_from_hf"]


def weights_from_hf(block: nn.Module, dtype: str | torch.dtype | None = None) -> MoEWeights:
    """Canonical MoEWeights (and their MoESpec, `.spec`) from a transformers sparse-MoE block.

    dtype: the dtype of the result (default: the experts' parameter dtype). The selection bias stays fp32.
    A router stored wider than the experts and the result (DeepSeek-V3 / GLM-4.5 keep gate.weight in fp32
    in bf16 models) is rounded to the result dtype, as the spec holds one dtype: a warning says so, since
    near-tied choices can then differ from the module's.
    """
    if not isinstance(block, nn.Module):
        raise MoEInputError(f"block: expected a torch.nn.Module (an HF sparse-MoE block), got {type(block).__name__}")
    router = read_router(block)
    num_experts, hidden = router.weight.shape
    experts = read_experts(block, num_experts, hidden)
    shared = read_shared(block, hidden)
    if shared.spec.count and not experts.spec.plain_swiglu:
        raise MoEInputError("block: shared experts beside clamped-SwiGLU experts: the spec gives both one activation")
    out_dtype = parse_dtype(dtype) if dtype is not None else experts.w1.dtype
    bits = {name: torch.finfo(t.dtype).bits for name, t in (("router", router.weight), ("experts", experts.w1))}
    if bits["router"] > bits["experts"] and bits["router"] > torch.finfo(out_dtype).bits:
        warnings.warn(
            f"block.gate.weight is {router.weight.dtype}; rounded to {out_dtype} (the spec's one dtype), so "
            "near-tied expert choices may differ from the module's",
            stacklevel=2,
        )
    spec = MoESpec(
        num_experts,
        router.top_k,
        hidden,
        experts.w2.shape[2],
        activation="swiglu",
        dtype=out_dtype,
        router=router.spec,
        expert=experts.spec,
        shared=shared.spec,
    )
    tensors = {
        "router": router.weight,
        "w1": experts.w1,
        "w2": experts.w2,
        "router_bias": router.bias,
        "b1": experts.b1,
        "b2": experts.b2,
        "shared_w1": shared.w1,
        "shared_w2": shared.w2,
        "shared_gate": shared.gate,
    }
    converted = {name: t.to(out_dtype).contiguous() for name, t in tensors.items() if t is not None}
    if router.selection_bias is not None:
        converted["selection_bias"] = router.selection_bias.to(torch.float32).contiguous()
    return MoEWeights(spec, **converted)
