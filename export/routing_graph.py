"""The router lowered to standard ONNX ops (fp32, static shapes, no scatter), shared by both export flavours.
It states every RouterSpec option exactly as moebench.routing.route_from_logits does:

    logits  = MatMul(x_f32, router^T) (+ router_bias)                       [T, E]
    scores  = Softmax | Sigmoid(logits), or the logits (softmax_after_topk)  [T, E]
    choice  = scores (+ selection_bias)                                      [T, E]
    groups:   group score = ReduceSum(TopK(choice as [T, G, E/G], 2))        [T, G]
              experts outside the TopK(topk_groups) groups -> -inf (Gather of the group's flag per expert)
    ids     = TopK(choice, k)                                                [T, k]  (ONNX: lower index first on ties)
    w       = the UNBIASED scores at ids (GatherElements when the choice was biased; else TopK's values)
              -> Softmax (softmax_after_topk) | / ReduceSum (renormalize); * scaling
    combine = ReduceSum(Where(ids[..., None] == arange(E), w, 0))            [T, E]  w at the chosen, 0 elsewhere
    chosen  = ReduceSum(Cast(ids[..., None] == arange(E)))                   [T, E]  1 at the chosen (chosen_mask)
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
CHOSEN = "chosen"  # [T, k, E] bool: slot s of token t chose expert e (dense_routing builds it)
X_F32 = "x_f32"  # the input cast to fp32 when the spec dtype is not (router_logits builds it)


def node_adder(nodes: list[onnx.NodeProto]) -> NodeFn:
    """node(op, inputs, outputs, **attrs) appends one node named after its first output; returns outputs."""

    def node(op: str, inputs: list[str], outputs: list[str], **attrs) -> list[str]:
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{outputs[0]}_{op}", **attrs))
        return outputs

    return node


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().to(torch.float32)


def routing_initializers(weights: MoEWeights) -> list[onnx.TensorProto]:
    """router_t [H, E] fp32 (exact upcast), the biases (fp32) and the constants `dense_routing` reads."""
    spec = weights.spec
    r, e = spec.router, spec.num_experts
    inits = [
        initializer("router_t", _f32(weights.router).t().contiguous()),
        int64_const("k", [spec.top_k]),
        int64_const("expert_ids", list(range(e))),
        int64_const("axis_last", [-1]),
        int64_const("axis_slot", [1]),
        scalar_const("zero_f32", 0.0, torch.float32),
    ]
    if r.bias:
        inits.append(initializer("router_bias", _f32(weights.router_bias)))
    if r.selection_bias:
        inits.append(initializer("selection_bias", _f32(weights.selection_bias)))
    if r.scaling != 1.0:
        inits.append(scalar_const("routed_scaling", r.scaling, torch.float32))
    if r.group_limited:
        per_group = e // r.groups
        inits += [
            int64_const("two", [2]),
            int64_const("topk_groups", [r.topk_groups]),
            int64_const("group_ids", list(range(r.groups))),
            int64_const("group_of_expert", [i // per_group for i in range(e)]),
            int64_const("shape_t_g_n", [0, r.groups, per_group]),  # 0 copies T (works at T=0)
            scalar_const("minus_inf_f32", float("-inf"), torch.float32),
        ]
    return inits


def router_logits(spec: MoESpec, node: NodeFn) -> str:
    """fp32 [T, E] logits, router bias included (input INPUT_NAME, cast once to X_F32 when not fp32)."""
    x32 = INPUT_NAME
    if spec.dtype != torch.float32:
        x32 = node("Cast", [INPUT_NAME], [X_F32], to=TensorProto.FLOAT)[0]
    logits = node("MatMul", [x32, "router_t"], ["logits"])[0]
    if spec.router.bias:
        logits = node("Add", [logits, "router_bias"], ["biased_logits"])[0]
    return logits


def _scores(spec: MoESpec, node: NodeFn) -> str:
    logits = router_logits(spec, node)
    if spec.router.softmax_after_topk:
        return logits
    if spec.router.scoring == "softmax":
        return node("Softmax", [logits], ["scores"], axis=-1)[0]
    return node("Sigmoid", [logits], ["scores"])[0]


def _mask_to_best_groups(choice: str, node: NodeFn) -> str:
    """choice [T, E] with experts outside each token's best topk_groups groups set to -inf."""
    node("Reshape", [choice, "shape_t_g_n"], ["choice_by_group"])
    node("TopK", ["choice_by_group", "two"], ["group_top2", "group_top2_ids"], axis=-1, largest=1, sorted=1)
    node("ReduceSum", ["group_top2", "axis_last"], ["group_scores"], keepdims=0)  # [T, G]
    node("TopK", ["group_scores", "topk_groups"], ["best_group_scores", "best_groups"], axis=-1, largest=1, sorted=1)
    node("Unsqueeze", ["best_groups", "axis_last"], ["best_groups_3d"])
    node("Equal", ["best_groups_3d", "group_ids"], ["group_hit"])  # [T, topk_groups, G]
    node("Cast", ["group_hit"], ["group_hit_f32"], to=TensorProto.FLOAT)
    node("ReduceMax", ["group_hit_f32", "axis_slot"], ["group_kept"], keepdims=0)  # [T, G] 1 for kept groups
    node("Gather", ["group_kept", "group_of_expert"], ["expert_kept"], axis=1)  # [T, E]
    node("Greater", ["expert_kept", "zero_f32"], ["expert_kept_bool"])
    return node("Where", ["expert_kept_bool", choice, "minus_inf_f32"], ["choice_in_groups"])[0]


def dense_routing(spec: MoESpec, node: NodeFn) -> str:
    """Add the router's nodes (input INPUT_NAME); returns the name of the fp32 [T, E] combine weights:
    each token's k routing weights at its experts' columns, 0 elsewhere. Also builds CHOSEN."""
    r = spec.router
    scores = _scores(spec, node)
    choice = scores
    if r.selection_bias:
        choice = node("Add", [scores, "selection_bias"], ["choice"])[0]
    if r.group_limited:
        choice = _mask_to_best_groups(choice, node)
    node("TopK", [choice, "k"], ["topk_choice", "topk_ids"], axis=-1, largest=1, sorted=1)
    topk_w = "topk_choice"
    if r.selection_bias:  # the weights are the unbiased scores of the chosen experts
        topk_w = node("GatherElements", [scores, "topk_ids"], ["topk_scores"], axis=-1)[0]
    if r.softmax_after_topk:
        topk_w = node("Softmax", [topk_w], ["topk_softmax"], axis=-1)[0]
    elif r.renormalize:
        node("ReduceSum", [topk_w, "axis_last"], ["topk_w_sum"], keepdims=1)
        topk_w = node("Div", [topk_w, "topk_w_sum"], ["topk_w_renorm"])[0]
    if r.scaling != 1.0:
        topk_w = node("Mul", [topk_w, "routed_scaling"], ["topk_w_scaled"])[0]
    # dense [T, E] combine weights without scatter: ids[T, k, 1] == arange(E) -> [T, k, E]
    node("Unsqueeze", ["topk_ids", "axis_last"], ["topk_ids_3d"])
    node("Equal", ["topk_ids_3d", "expert_ids"], [CHOSEN])
    node("Unsqueeze", [topk_w, "axis_last"], ["topk_w_3d"])
    node("Where", [CHOSEN, "topk_w_3d", "zero_f32"], ["slot_weights"])
    return node("ReduceSum", ["slot_weights", "axis_slot"], ["combine_f32"], keepdims=0)[0]


def chosen_mask(node: NodeFn) -> str:
    """fp32 [T, E]: 1 at each token's chosen experts, 0 elsewhere (after dense_routing). Built from the ids,
    not from the weights, so a chosen expert whose weight underflowed to 0 still counts as chosen."""
    node("Cast", [CHOSEN], ["chosen_f32"], to=TensorProto.FLOAT)
    return node("ReduceSum", ["chosen_f32", "axis_slot"], ["chosen_mask_f32"], keepdims=0)[0]
