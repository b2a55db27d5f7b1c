"""The portable ONNX lowering of the MoE layer: standard ops only, every shape static but T.

One lowering for every implementation: it is built from the spec and the canonical weights,
never traced, so no example's routing is baked in. Data flow (T tokens, compute dtype D):

    combine = the router, export/routing_graph.py (every RouterSpec option)     [T, E]  fp32, dense, no scatter
    routed  = all E experts densely, weighted by combine (export/ffn_graph.py):  [T, H]  D
              h = x W1cat [T, E*G*I] (+ b1), a = act(h) [T, E, I] (clamped SwiGLU included),
              y = (a * combine) W2cat + combine b2; weight on the input: h scaled by combine first
    shared  = the S shared experts the same way, weighted by sigmoid(x . gate) when gated
    y       = routed + shared

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

import onnx
import torch
from onnx import helper

from moebench.export.ffn_graph import (
    Experts,
    activation_initializers,
    dense_experts,
    ffn_initializers,
    shared_experts,
    shared_initializers,
)
from moebench.export.graph_common import (
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    check_export_args,
    make_model,
    spec_metadata,
    token_tensor_info,
)
from moebench.export.routing_graph import chosen_mask, dense_routing, node_adder, routing_initializers
from moebench.weights import MoEWeights

FLAVOR = "portable"


def useful_flop_ratio(weights_or_spec) -> float:
    """FLOPs the portable graph does per useful FLOP (E / k, the router and shared experts excluded)."""
    spec = getattr(weights_or_spec, "spec", weights_or_spec)
    return spec.num_experts / spec.top_k


def dense_intermediate_bytes(spec, num_tokens: int) -> int:
    """Bytes of the largest intermediates the dense graph holds at once: h1 [T, E*G*I] plus the
    activation [T, E*I] and its weighted copy, in the compute dtype (what to budget memory for)."""
    elem = torch.finfo(spec.dtype).bits // 8
    return num_tokens * spec.num_experts * (spec.w1_rows + 2 * spec.intermediate) * elem


def routed_experts(spec) -> Experts:
    return Experts("", spec.num_experts, spec.intermediate, bias=spec.expert.bias)


def build_portable(weights: MoEWeights, *, impl: str = "naive_loop", opset: int = MIN_OPSET) -> onnx.ModelProto:
    """The portable graph for these weights; `impl` is recorded as the implementation it stands for."""
    spec = weights.spec
    check_export_args(spec, opset, FLAVOR)
    experts = routed_experts(spec)
    inits = routing_initializers(weights)
    inits += ffn_initializers(experts, weights.w1, weights.w2, weights.b1, weights.b2)
    inits += activation_initializers(spec) + shared_initializers(spec, weights)
    nodes: list[onnx.NodeProto] = []
    node = node_adder(nodes)
    combine = dense_routing(spec, node)
    on_input = spec.router.weight_on == "input"
    mask = chosen_mask(node) if on_input else None
    routed_out = None if spec.shared.count else OUTPUT_NAME
    routed = dense_experts(spec, experts, node, weights=combine, on_input=on_input, mask=mask, out=routed_out)
    if spec.shared.count:
        node("Add", [routed, shared_experts(spec, node)], [OUTPUT_NAME])

    graph = helper.make_graph(
        nodes,
        "moebench_moe_portable",
        [token_tensor_info(INPUT_NAME, spec.dtype, spec.hidden)],
        [token_tensor_info(OUTPUT_NAME, spec.dtype, spec.hidden)],
        inits,
    )
    meta = spec_metadata(
        spec,
        flavor=FLAVOR,
        impl=impl,
        extra={
            "flop_ratio": f"{useful_flop_ratio(spec):g} (all E experts computed for every token; k used)",
            "weights_layout": "router_t [H,E] fp32; w1_cat [H,E*G*I]; w2_cat [E*I,H]; b1 [E,G*I]; b2 [E,H]; "
            "shared_w1_cat [H,S*G*I_s]; shared_w2_cat [S*I_s,H]; shared_gate_t [H,S] fp32",
        },
    )
    return make_model(graph, opset=opset, metadata=meta)
