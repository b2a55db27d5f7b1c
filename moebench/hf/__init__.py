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
(declared storage layout, activation), moebench/hf/shared.py (shared experts), moebench/hf/quantized.py (routed
experts stored in fp8-block128 or mxfp4, as DeepSeek-V3's and gpt-oss's checkpoints keep them: their codes and
scales become `weights.quant` unchanged). transformers is never imported.
A block whose computation the spec cannot state raises MoEInputError with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from moebench.errors import MoEInputError
from moebench.hf.experts import read_experts
from moebench.hf.quantized import declared_format, read_quantized_experts
from moebench.hf.routers import read_router
from moebench.hf.shared import read_shared
from moebench.spec import MoESpec, parse_dtype
from moebench.weights import MoEWeights

__all__ = ["weights_from_hf"]

_PLAIN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def weights_from_hf(
    block: nn.Module, dtype: str | torch.dtype | None = None, quantization_config: Mapping | None = None
) -> MoEWeights:
    """Canonical MoEWeights (and their MoESpec, `.spec`) from a transformers sparse-MoE block.

    dtype: the dtype of the result (default: the experts' parameter dtype; the router's when the experts are
    quantised). The selection bias stays fp32.
    quantization_config: the checkpoint's (a dict as in its config.json; default: block.config's, if any).
    Quantised experts (moebench/hf/quantized.py) keep their codes and scales in `weights.quant`, spec.quant
    names the format, and w1/w2 are those weights dequantised to `dtype` (there is no other original).
    A router stored wider than the experts and the result (DeepSeek-V3 / GLM-4.5 keep gate.weight in fp32
    in bf16 models) is rounded to the result dtype, as the spec holds one dtype: a warning says so, since
    near-tied choices can then differ from the module's.
    """
    if not isinstance(block, nn.Module):
        raise MoEInputError(f"block: expected a torch.nn.Module (an HF sparse-MoE block), got {type(block).__name__}")
    router = read_router(block)
    num_experts, hidden = router.weight.shape
    fmt = declared_format(block, quantization_config)
    quant = None
    if fmt is None:
        experts = read_experts(block, num_experts, hidden)
    else:
        experts, quant = read_quantized_experts(block, num_experts, hidden, fmt)
    shared = read_shared(block, hidden)
    if shared.spec.count and not experts.spec.plain_swiglu:
        raise MoEInputError("block: shared experts beside clamped-SwiGLU experts: the spec gives both one activation")
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
    for name, t in tensors.items():
        if t is not None and t.dtype not in _PLAIN_DTYPES:
            raise MoEInputError(
                f"block ({name}): stored as {t.dtype}; quantised tensors are read only as moebench/hf/quantized.py "
                "states (routed experts in fp8-block128 or mxfp4, declared by quantization_config or their names)"
            )
    default = experts.w1.dtype if quant is None else router.weight.dtype
    out_dtype = parse_dtype(dtype) if dtype is not None else default
    expert_bits = torch.finfo(experts.w1.dtype if quant is None else out_dtype).bits
    router_bits = torch.finfo(router.weight.dtype).bits
    if router_bits > expert_bits and router_bits > torch.finfo(out_dtype).bits:
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
        quant=None if fmt is None else fmt.name,
    )
    converted = {name: t.to(out_dtype).contiguous() for name, t in tensors.items() if t is not None}
    if router.selection_bias is not None:
        converted["selection_bias"] = router.selection_bias.to(torch.float32).contiguous()
    return MoEWeights(spec, **converted, quant=quant)
