"""vllm_fused (peer): vLLM's fused_moe Triton path (`fused_experts`), fed our weights and routing.

vLLM's unquantised experts use our canonical layout: w1 [E, 2I, H] (gate rows then up rows,
combined by silu_and_mul) and w2 [E, H, I]. Routing comes from moebench.routing.route (fp32
weights, ids cast to int32 as vLLM's kernels expect), so only the expert computation is vLLM's.
swiglu only (vLLM's "gelu" is a gated GELU, not our plain FFN). Needs `vllm` and a CUDA GPU.
"""

from __future__ import annotations

import torch

from moebench.registry import register
from moebench.routing import route_unless_given
from moebench.spec import ROUTING_ONLY
from moebench.weights import MoEWeights


def _activation_reason(spec) -> str | None:
    """vLLM's 'gelu' is a gated GELU, not our plain GELU FFN: only swiglu is fed to fused_experts."""
    if spec.activation != "swiglu":
        return f"activation: vllm_fused supports 'swiglu' only, got {spec.activation!r}"
    return None


def _fused_experts():
    from vllm.model_executor.layers.fused_moe import fused_experts

    return fused_experts


@register(
    "vllm_fused",
    kind="peer",
    description="vLLM fused_moe Triton kernels (fused_experts) with our routing; swiglu only",
    requires=("vllm", "cuda"),
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    devices=("cuda",),
    graph_safe=True,
    spec_check=_activation_reason,
    features=ROUTING_ONLY,  # the routing is ours (moebench.routing): every option that only shapes it
    features_note=(
        "called here as plain fused_experts(x, w1, w2, weights, ids): no expert biases, SwiGLU options, input "
        "weighting or shared experts, none of which can be run here (no vllm, no GPU) to check them"
    ),
)
def vllm_fused(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    if x.shape[0] == 0:
        return x.new_zeros(x.shape) if out is None else out
    topk_weights, topk_ids = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    result = _fused_experts()(x, weights.w1, weights.w2, topk_weights, topk_ids.to(torch.int32), inplace=False)
    if out is None:
        return result
    return out.copy_(result)
