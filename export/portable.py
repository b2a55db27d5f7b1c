"""The portable ONNX lowering of the MoE layer: standard ops only, every shape static but T.

One lowering for every implementation: it is built from the spec and the canonical weights,
never traced, so no example's routing is baked in. Data flow (T tokens, compute dtype D):

    combine = the router, export/routing_graph.py                   [T, E]   fp32, dense, no scatter
    h       = MatMul(x, W1cat)      W1cat = [H, E*G*I]              [T, E*G*I]  all experts at once
    a       = act(h viewed [T, E, G*I])                             [T, E, I]
    y       = MatMul((a * combine[..., None]) viewed [T, E*I], W2cat)  [T, H]  (the sum over E is the GEMM's K loop)

Trade-off, said plainly: every token goes through all E experts, so the graph does E/k times
the useful FLOPs (mixtral 4x, qwen3-30b-a3b 16x, deepseek-v3 32x) and reads all expert weights
at every T. In exchange every op has a static output shape (no NonZero, no data-dependent
sizes, no ScatterND/ScatterElements), so TensorRT's ONNX parser takes it, an engine can be built
for a range of T, and the result is correct at any T (0 included) and for any routing. The
two GEMMs are plain 2-D GEMMs (the fastest shape on every backend); the combine weights are
folded in before the second GEMM, so no [E, T, H] tensor is ever built.
A cheaper static form for decode (T*k << E) gathers the k chosen experts' weights per token
(Gather on the weights: T*k*3*H*I bytes, static shapes); it loses at prefill sizes, where the
gathered copies outgrow the weights themselves, and is not built here.
"""

from __future__ import annotations

import math

import onnx
import torch
from onnx import helper

from moebench.export.graph_common import (
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    check_export_args,
    initializer,
    int64_const,
    make_model,
    onnx_dtype,
    scalar_const,
    spec_metadata,
    token_tensor_info,
)
from moebench.export.routing_graph import dense_routing, node_adder, routing_initializers
from moebench.weights import MoEWeights

FLAVOR = "portable"


def portable_weights(weights: MoEWeights) -> dict[str, torch.Tensor]:
    """The canonical expert weights re-laid out for the portable graph (values unchanged; the router's
    are export/routing_graph.py's).

    w1_cat:   [H, E*G*I] spec dtype, column block e = expert e's [gate; up] rows, transposed
    w2_cat:   [E*I, H]   spec dtype, row block e = expert e's w2 transposed
    """
    spec = weights.spec
    e, h, i, g = spec.num_experts, spec.hidden, spec.intermediate, spec.w1_rows // spec.intermediate
    return {
        "w1_cat": weights.w1.detach().cpu().permute(2, 0, 1).reshape(h, e * g * i).contiguous(),
        "w2_cat": weights.w2.detach().cpu().permute(0, 2, 1).reshape(e * i, h).contiguous(),
    }


def useful_flop_ratio(weights_or_spec) -> float:
    """FLOPs the portable graph does per useful FLOP (E / k, the router excluded)."""
    spec = getattr(weights_or_spec, "spec", weights_or_spec)
    return spec.num_experts / spec.top_k


def dense_intermediate_bytes(spec, num_tokens: int) -> int:
    """Bytes of the largest intermediates the dense graph holds at once: h1 [T, E*G*I] plus the
    activation [T, E*I] and its weighted copy, in the compute dtype (what to budget memory for)."""
    elem = torch.finfo(spec.dtype).bits // 8
    return num_tokens * spec.num_experts * (spec.w1_rows + 2 * spec.intermediate) * elem


def build_portable(weights: MoEWeights, *, impl: str = "naive_loop", opset: int = MIN_OPSET) -> onnx.ModelProto:
    """The portable graph for these weights; `impl` is recorded as the implementation it stands for."""
    spec = weights.spec
    check_export_args(spec, opset)
    dt = spec.dtype
    d = onnx_dtype(dt)
    e, k, h, i = spec.shape
    gi = spec.w1_rows
    nodes: list[onnx.NodeProto] = []
    inits = [initializer(name, t) for name, t in portable_weights(weights).items()]
    inits += routing_initializers(weights)
    inits += [
        int64_const("shape_t_e_gi", [0, e, gi]),  # 0 copies T (works at T=0, unlike -1)
        int64_const("shape_t_ei", [0, e * i]),
    ]
    node = node_adder(nodes)
    combine = dense_routing(spec, node)  # [T, E] fp32
    if dt != torch.float32:
        combine = node("Cast", [combine], ["combine"], to=d)[0]

    # --- all experts' FFNs as two 2-D GEMMs, compute dtype D ---------------------------------
    node("MatMul", [INPUT_NAME, "w1_cat"], ["h1_flat"])
    node("Reshape", ["h1_flat", "shape_t_e_gi"], ["h1"])
    act = _activation(spec, "h1", node, inits)
    node("Unsqueeze", [combine, "axis_last"], ["combine_3d"])
    node("Mul", [act, "combine_3d"], ["act_weighted"])
    node("Reshape", ["act_weighted", "shape_t_ei"], ["act_flat"])
    node("MatMul", ["act_flat", "w2_cat"], [OUTPUT_NAME])

    graph = helper.make_graph(
        nodes,
        "moebench_moe_portable",
        [token_tensor_info(INPUT_NAME, dt, h)],
        [token_tensor_info(OUTPUT_NAME, dt, h)],
        inits,
    )
    meta = spec_metadata(
        spec,
        flavor=FLAVOR,
        impl=impl,
        extra={
            "flop_ratio": f"{useful_flop_ratio(spec):g} (all E experts computed for every token; k used)",
            "weights_layout": "router_t [H,E] fp32; w1_cat [H,E*G*I]; w2_cat [E*I,H]",
        },
    )
    return make_model(graph, opset=opset, metadata=meta)


def _activation(spec, h1: str, node, inits: list) -> str:
    """[T, E, G*I] -> [T, E, I] in the compute dtype (same definitions as moebench.activations)."""
    dt = spec.dtype
    if spec.activation == "swiglu":
        node("Split", [h1], ["gate", "up"], axis=2, num_outputs=2)
        node("Sigmoid", ["gate"], ["gate_sigmoid"])
        node("Mul", ["gate", "gate_sigmoid"], ["gate_silu"])
        return node("Mul", ["gate_silu", "up"], ["act"])[0]
    if spec.activation == "gelu":
        # exact GELU: 0.5 * h * (1 + erf(h / sqrt(2))) (Erf rather than opset-20 Gelu: runs from opset 18)
        inits += [
            scalar_const("inv_sqrt2", 1.0 / math.sqrt(2.0), dt),
            scalar_const("one", 1.0, dt),
            scalar_const("half", 0.5, dt),
        ]
        node("Mul", [h1, "inv_sqrt2"], ["h1_scaled"])
        node("Erf", ["h1_scaled"], ["h1_erf"])
        node("Add", ["h1_erf", "one"], ["h1_erf_1"])
        node("Mul", [h1, "h1_erf_1"], ["h1_gelu_2"])
        return node("Mul", ["h1_gelu_2", "half"], ["act"])[0]
    return node("Relu", [h1], ["act"])[0]
