"""naive_loop: per expert, gather its tokens, run the FFN, scatter-add weighted outputs.

The Hugging Face eager path, written plainly. Loops over experts on the host and skips empty
ones (a host sync), so it cannot be captured in a CUDA graph. Honours every spec option: the router
options through moebench.routing, input weighting, expert biases and the SwiGLU options through
moebench.activations, shared experts as a dense FFN per shared expert.

Quantised experts (spec.quant): dequantised up front, once per weights (a cached derived copy in fp32),
then the same loop in fp32, with fp8-block128's activations quantised-dequantised per token group before
each GEMM. The honest "what you would do without a kernel" baseline: it reads full-size weights.
"""

from __future__ import annotations

import torch

from moebench.activations import add_shared_experts, expert_biases, expert_ffn, expert_inputs, output_weights
from moebench.registry import any_quant, register
from moebench.routing import route_unless_given
from moebench.spec import FEATURES
from moebench.weights import MoEWeights


@register(
    "naive_loop",
    kind="loop",
    description="per-expert gather -> FFN -> weighted index_add (HF eager style)",
    backward=True,
    graph_safe=False,
    baseline=True,
    features=FEATURES,
    quant=any_quant,
)
def naive_loop(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    spec = weights.spec
    topk_weights, topk_ids = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    xs, w1, w2, group = x, weights.w1, weights.w2, None
    if weights.quant is not None:  # dequantised up front (fp32), cached with the weights
        w1, w2 = weights.derived("dequantized/fp32", lambda w: w.quant.dequantize(torch.float32))
        xs, group = x.float(), weights.quant.fmt.act_group
    acc = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    hit = torch.bincount(topk_ids.reshape(-1), minlength=spec.num_experts).nonzero().flatten().tolist()
    for expert in hit:
        token_idx, slot = torch.where(topk_ids == expert)
        pair_weights = topk_weights[token_idx, slot]  # [n] fp32
        rows = expert_inputs(spec, xs[token_idx], pair_weights)  # [n, H]
        y = expert_ffn(spec, rows, w1[expert], w2[expert], *expert_biases(weights, expert), act_group=group)
        acc.index_add_(0, token_idx, y.float() * output_weights(spec, pair_weights)[:, None])
    add_shared_experts(acc, x, weights)
    if out is None:
        return acc.to(x.dtype)
    return out.copy_(acc)
