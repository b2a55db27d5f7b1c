"""The router lowered to standard ONNX ops, shared by both export flavours.

    logits  = MatMul(x_f32, router^T)                              [T, E]  fp32 (like moebench.routing)
    scores  = Softmax | Sigmoid(logits)                            [T, E]  fp32
    w, ids  = TopK(scores, k)  (-> w / ReduceSum(w) if renorm)     [T, k]
    combine = ReduceSum(Where(ids[..., None] == arange(E), w, 0))  [T, E]  dense, no scatter

ONNX's TopK returns the lower index first among equal values. torch.topk promises no order among
equal values; measured (tests/test_ties.py): on two equal scores at the boundary it takes the lower
index too, so both flavours choose as moebench.routing.route does; among several equal scores (a
saturated sigmoid) it may take others, which the parity gate accepts (an exact tie). Both flavours
select experts here, on fp32 scores: ort-fused hands com.microsoft.MoE a router input that leaves it
no choice (export/ort_fused.py), rather than letting the op run its own top-k.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import torch
from onnx import TensorProto, helper

from moebench.export.graph_common import INPUT_NAME, initializer, int64_const, scalar_const
from moebench.spec import MoESpec
from moebench.weights import MoEWeights

NodeFn = Callable[..., list[str]]


def node_adder(nodes: list[onnx.NodeProto]) -> NodeFn:
    """node(op, inputs, outputs, **attrs) appends one node named after its first output; returns outputs."""

    def node(op: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{outputs[0]}_{op}", **attrs))
        return outputs

    return node


def routing_initializers(weights: MoEWeights) -> list[onnx.TensorProto]:
    """router_t [H, E] fp32 (exact upcast) and the constants `dense_routing` reads."""
    spec = weights.spec
    return [
        initializer("router_t", weights.router.detach().cpu().to(torch.float32).t().contiguous()),
        int64_const("k", [spec.top_k]),
        int64_const("expert_ids", list(range(spec.num_experts))),
        int64_const("axis_last", [-1]),
        int64_const("axis_slot", [1]),
        scalar_const("zero_f32", 0.0, torch.float32),
    ]


def dense_routing(spec: MoESpec, node: NodeFn) -> str:
    """Add the router's nodes (input INPUT_NAME); returns the name of the fp32 [T, E] combine weights:
    each token's k routing weights at its experts' columns, 0 elsewhere."""
    x32 = INPUT_NAME
    if spec.dtype != torch.float32:
        x32 = node("Cast", [INPUT_NAME], ["x_f32"], to=TensorProto.FLOAT)[0]
    node("MatMul", [x32, "router_t"], ["logits"])
    if spec.router.scoring == "softmax":
        node("Softmax", ["logits"], ["scores"], axis=-1)
    else:
        node("Sigmoid", ["logits"], ["scores"])
    node("TopK", ["scores", "k"], ["topk_w_raw", "topk_ids"], axis=-1, largest=1, sorted=1)
    topk_w = "topk_w_raw"
    if spec.router.renormalize:
        node("ReduceSum", ["topk_w_raw", "axis_last"], ["topk_w_sum"], keepdims=1)
        topk_w = node("Div", ["topk_w_raw", "topk_w_sum"], ["topk_w"])[0]
    # dense [T, E] combine weights without scatter: ids[T, k, 1] == arange(E) -> [T, k, E]
    node("Unsqueeze", ["topk_ids", "axis_last"], ["topk_ids_3d"])
    node("Equal", ["topk_ids_3d", "expert_ids"], ["chosen"])
    node("Unsqueeze", [topk_w, "axis_last"], ["topk_w_3d"])
    node("Where", ["chosen", "topk_w_3d", "zero_f32"], ["slot_weights"])
    return node("ReduceSum", ["slot_weights", "axis_slot"], ["combine_f32"], keepdims=0)[0]
