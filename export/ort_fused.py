"""The ONNX Runtime flavour: router MatMul + ONNX Runtime's `com.microsoft.MoE` contrib op.

The op's contract (onnxruntime 1.32 schema, checked against its CPU kernel, moe_cpu.cc):
  inputs  (input[T,H], router_probs[T,E], fc1_experts_weights, fc1_experts_bias?, fc2_experts_weights,
           fc2_experts_bias?, fc3_experts_weights?, fc3_experts_bias?), all of type T in {f32, f16, bf16};
  fc1: [E, G*I, H] and fc2: [E, H, I], i.e. our canonical layout (older releases documented
       fc1 [E, H, G*I] / fc2 [E, I, H]; `fused_weight_layout` reads the installed schema);
  router_probs are LOGITS: the op applies softmax over all E, takes the top k, and divides by
       their sum when normalize_routing_weights=1;
  activation_type "swiglu": G*sigmoid(alpha*G)*(L+beta) with G,L clamped by swiglu_limit; the
       defaults alpha=1, beta=0 and no swiglu_limit give plain silu(g)*u (set explicitly here);
  swiglu_fusion 1 = gate/up interleaved per row pair [g0,u0,g1,u1,...], 2 = concatenated [g|u];
       the CPU kernel accepts only 1, so our [gate; up] rows are interleaved at export;
  activation_type "gelu" is the tanh approximation (measured: matches tanh-GELU to 2e-7, exact
       GELU only to 2e-4), so specs with exact GELU are refused rather than silently changed.

Routing: the op would run its own softmax and top-k on its router input, in the op's type T (so in
fp16/bf16 on rounded logits), and it breaks exact ties towards the higher index (measured: of two
equal logits it takes the second) where ONNX TopK, and torch.topk on a tied pair, take the lower.
So the experts are selected before the op, by the portable graph's router (export/routing_graph.py:
fp32 scores, ONNX TopK, lower index first), and the op is handed

    router_probs = log(w / max_k w) for the k chosen experts, NOT_CHOSEN (-30000) for the others,

with w the fp32 routing weights (renormalised or not), and normalize_routing_weights=1. The op's
top-k then has exactly k candidates above -30000 and must take them, whatever its tie-breaking
(exact: a choice cannot move); its softmax over them gives w_i / sum_k w, the renormalised weights.
Without renormalisation the op's output is multiplied by sum_k w per token, which gives back the
unnormalised weights: that also expresses sigmoid scoring without renormalisation. The log-ratios
are in [-104, 0], so rounding them to fp16/bf16 costs a relative weight error of about
|log(w / max w)| * unit roundoff (the old router input, raw logits cast to T, cost |logit| * unit
roundoff and could reorder near-equal logits).
"""

from __future__ import annotations

import re

import onnx
import torch
from onnx import helper

from moebench.errors import MoEInputError
from moebench.export.graph_common import (
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    check_export_args,
    initializer,
    make_model,
    onnx_dtype,
    scalar_const,
    spec_metadata,
    token_tensor_info,
)
from moebench.export.routing_graph import dense_routing, node_adder, routing_initializers
from moebench.spec import MoESpec
from moebench.weights import MoEWeights

FLAVOR = "ort-fused"
MS_DOMAIN = "com.microsoft"
LAYOUT_CANONICAL = "fc1[E,G*I,H] fc2[E,H,I]"  # onnxruntime >= 1.2x schema (1.32 here)
LAYOUT_TRANSPOSED = "fc1[E,H,G*I] fc2[E,I,H]"  # older releases' documented layout
NOT_CHOSEN = -30000.0  # router input of the experts not chosen: finite in fp16, exp() of it is 0


def unsupported_reason(spec: MoESpec) -> str | None:
    """Why com.microsoft.MoE cannot compute this spec exactly, or None when it can."""
    if spec.activation == "gelu":
        return (
            "activation: com.microsoft.MoE's 'gelu' is the tanh approximation but the spec's gelu is exact "
            "(erf); use --flavor portable"
        )
    return None


def check_supported(spec: MoESpec) -> None:
    reason = unsupported_reason(spec)
    if reason:
        raise MoEInputError(f"{reason} (spec: {spec.describe()})")


def fused_weight_layout() -> str:
    """The fc1/fc2 layout the installed onnxruntime's MoE schema documents (canonical if unknown)."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as C

        schemas = [s for s in C.get_all_operator_schema() if s.name == "MoE" and s.domain == MS_DOMAIN]
    except Exception:  # no onnxruntime or a build without schemas: assume the current layout
        return LAYOUT_CANONICAL
    for schema in schemas:
        for inp in schema.inputs:
            if inp.name == "fc1_experts_weights":
                text = inp.description.replace(" ", "")
                if re.search(r"\(num_experts,hidden_size,", text):
                    return LAYOUT_TRANSPOSED
                return LAYOUT_CANONICAL
    return LAYOUT_CANONICAL


def fused_weights(weights: MoEWeights, layout: str | None = None) -> dict[str, torch.Tensor]:
    """Canonical expert weights in the op's layout: fc1 rows interleaved [g0,u0,g1,u1,...] for swiglu."""
    spec = weights.spec
    layout = layout or fused_weight_layout()
    e, _, h, i = spec.shape
    w1 = weights.w1.detach().cpu()
    if spec.gated:
        gate, up = w1[:, :i], w1[:, i:]  # [E, I, H] each
        w1 = torch.stack([gate, up], dim=2).reshape(e, 2 * i, h)  # row 2j = gate j, row 2j+1 = up j
    w2 = weights.w2.detach().cpu()
    if layout == LAYOUT_TRANSPOSED:
        w1, w2 = w1.transpose(1, 2), w2.transpose(1, 2)
    return {
        "fc1": w1.contiguous(),
        "fc2": w2.contiguous(),
    }


def build_ort_fused(weights: MoEWeights, *, impl: str = "naive_loop", opset: int = MIN_OPSET) -> onnx.ModelProto:
    """fp32 router (chooses the experts) -> router input that forces that choice -> com.microsoft.MoE.
    Raises for specs it cannot express."""
    spec = weights.spec
    check_export_args(spec, opset)
    check_supported(spec)
    dt = spec.dtype
    layout = fused_weight_layout()
    inits = [initializer(name, t) for name, t in fused_weights(weights, layout).items()]
    inits += routing_initializers(weights)
    inits.append(scalar_const("not_chosen", NOT_CHOSEN, torch.float32))
    nodes: list[onnx.NodeProto] = []
    node = node_adder(nodes)
    combine = dense_routing(spec, node)  # [T, E] fp32: the k weights at the chosen experts, 0 elsewhere
    node("ReduceMax", [combine, "axis_last"], ["combine_max"], keepdims=1)
    node("Div", [combine, "combine_max"], ["combine_ratio"])
    node("Log", ["combine_ratio"], ["log_ratio"])  # -inf where not chosen (replaced next)
    node("Greater", [combine, "zero_f32"], ["is_chosen"])
    probs = node("Where", ["is_chosen", "log_ratio", "not_chosen"], ["router_probs_f32"])[0]
    if dt != torch.float32:
        probs = node("Cast", [probs], ["router_probs"], to=onnx_dtype(dt))[0]
    attrs = {
        "k": spec.top_k,
        "normalize_routing_weights": 1,  # softmax over the k chosen log-ratios: w_i / sum_k w
        "use_sparse_mixer": 0,
        "activation_type": spec.activation,  # swiglu | relu (gelu refused above)
    }
    if spec.gated:
        attrs.update(swiglu_fusion=1, activation_alpha=1.0, activation_beta=0.0)  # plain silu(g)*u, no clamp
    moe_out = OUTPUT_NAME if spec.router.renormalize else "moe_out"
    nodes.append(
        helper.make_node("MoE", [INPUT_NAME, probs, "fc1", "", "fc2"], [moe_out], name="MoE", domain=MS_DOMAIN, **attrs)
    )
    if not spec.router.renormalize:  # back to the unnormalised weights: times sum_k w per token
        mass = node("ReduceSum", [combine, "axis_last"], ["routed_mass_f32"], keepdims=1)[0]
        if dt != torch.float32:
            mass = node("Cast", [mass], ["routed_mass"], to=onnx_dtype(dt))[0]
        node("Mul", [moe_out, mass], [OUTPUT_NAME])
    graph = helper.make_graph(
        nodes,
        "moebench_moe_ort_fused",
        [token_tensor_info(INPUT_NAME, dt, spec.hidden)],
        [token_tensor_info(OUTPUT_NAME, dt, spec.hidden)],
        inits,
    )
    meta = spec_metadata(
        spec,
        flavor=FLAVOR,
        impl=impl,
        extra={
            "weights_layout": f"router_t [H,E] fp32; {layout}; swiglu rows interleaved (swiglu_fusion=1)",
            "router_input": "log(w / max w) of the fp32 router's top-k, -30000 elsewhere"
            + ("" if spec.router.renormalize else "; output times sum_k w"),
        },
    )
    return make_model(graph, opset=opset, metadata=meta, extra_domains={MS_DOMAIN: 1})
