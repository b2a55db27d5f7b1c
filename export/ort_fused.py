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

Routing mapped onto a softmax-only op:
  softmax scoring:            router_probs = logits, normalize_routing_weights = renormalize.
  sigmoid scoring + renorm:   router_probs = log(sigmoid(logits)). Softmax of log-sigmoids is
       sigmoid(l_i) / sum_all sigmoid(l_j): same order (top-k unchanged), and after the op's
       renormalisation sigmoid(l_i) / sum_topk sigmoid(l_j), exactly the renormalised sigmoid
       weights (DeepSeek-V3, tiny-many).
  sigmoid scoring, no renorm: the per-token factor sum_all sigmoid(l_j) cannot be undone inside
       the op: refused with MoEInputError.
Router logits are computed in fp32 (like moebench.routing) and cast to the op's type T, so in
fp16/bf16 the op routes on rounded logits: near-ties can pick a different expert than the fp32
router would (rare; seen as one token off in parity).
"""

from __future__ import annotations

import re

import onnx
import torch
from onnx import TensorProto, helper

from moebench.errors import MoEInputError
from moebench.export.graph_common import (
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    check_export_args,
    initializer,
    make_model,
    onnx_dtype,
    spec_metadata,
    token_tensor_info,
)
from moebench.spec import MoESpec
from moebench.weights import MoEWeights

FLAVOR = "ort-fused"
MS_DOMAIN = "com.microsoft"
LAYOUT_CANONICAL = "fc1[E,G*I,H] fc2[E,H,I]"  # onnxruntime >= 1.2x schema (1.32 here)
LAYOUT_TRANSPOSED = "fc1[E,H,G*I] fc2[E,I,H]"  # older releases' documented layout


def unsupported_reason(spec: MoESpec) -> str | None:
    """Why com.microsoft.MoE cannot compute this spec exactly, or None when it can."""
    if spec.router.scoring == "sigmoid" and not spec.router.renormalize:
        return (
            "router: com.microsoft.MoE applies softmax to its router input; sigmoid scoring without "
            "renormalisation cannot be expressed (sigmoid+renormalize can); use --flavor portable"
        )
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


def interleave_gate_up(t: torch.Tensor, inter: int) -> torch.Tensor:
    """[E, 2I, ...] gate rows then up rows -> rows interleaved (row 2j = gate j, 2j+1 = up j): swiglu_fusion=1."""
    gate, up = t[:, :inter], t[:, inter:]
    return torch.stack([gate, up], dim=2).reshape(t.shape)


def fused_weights(weights: MoEWeights, layout: str | None = None) -> dict[str, torch.Tensor]:
    """Canonical weights in the op's layout: fc1 rows interleaved [g0,u0,g1,u1,...] for swiglu."""
    spec = weights.spec
    layout = layout or fused_weight_layout()
    w1 = weights.w1.detach().cpu()
    if spec.gated:
        w1 = interleave_gate_up(w1, spec.intermediate)
    w2 = weights.w2.detach().cpu()
    if layout == LAYOUT_TRANSPOSED:
        w1, w2 = w1.transpose(1, 2), w2.transpose(1, 2)
    return {
        "router_t": weights.router.detach().cpu().to(torch.float32).t().contiguous(),  # [H, E] fp32
        "fc1": w1.contiguous(),
        "fc2": w2.contiguous(),
    }


def router_nodes(spec: MoESpec) -> tuple[list, str]:
    """Router MatMul (fp32) -> [log-sigmoid] -> Cast to the spec dtype: (nodes, name of the op's router_probs)."""
    dt = spec.dtype
    nodes = []
    x32 = INPUT_NAME
    if dt != torch.float32:
        nodes.append(helper.make_node("Cast", [INPUT_NAME], ["x_f32"], name="x_f32_Cast", to=TensorProto.FLOAT))
        x32 = "x_f32"
    nodes.append(helper.make_node("MatMul", [x32, "router_t"], ["logits"], name="router_MatMul"))
    probs = "logits"
    if spec.router.scoring == "sigmoid":
        # log(sigmoid(l)) = -softplus(-l): stable for large |l|
        nodes.append(helper.make_node("Neg", ["logits"], ["neg_logits"], name="neg_logits_Neg"))
        nodes.append(helper.make_node("Softplus", ["neg_logits"], ["softplus_neg"], name="softplus_neg_Softplus"))
        nodes.append(helper.make_node("Neg", ["softplus_neg"], ["log_sigmoid"], name="log_sigmoid_Neg"))
        probs = "log_sigmoid"
    if dt != torch.float32:
        nodes.append(helper.make_node("Cast", [probs], ["router_probs"], name="router_probs_Cast", to=onnx_dtype(dt)))
        probs = "router_probs"
    return nodes, probs


def build_ort_fused(weights: MoEWeights, *, impl: str = "naive_loop", opset: int = MIN_OPSET) -> onnx.ModelProto:
    """Router MatMul (fp32) -> [log-sigmoid] -> Cast -> com.microsoft.MoE (com.microsoft.QMoE for quantised
    experts: moebench.export.ort_qmoe). Raises for specs it cannot express."""
    spec = weights.spec
    check_export_args(spec, opset, FLAVOR)
    check_supported(spec)
    if spec.quant is not None:
        from moebench.export.ort_qmoe import build_ort_qmoe

        return build_ort_qmoe(weights, impl=impl, opset=opset)
    layout = fused_weight_layout()
    inits = [initializer(name, t) for name, t in fused_weights(weights, layout).items()]
    nodes, probs = router_nodes(spec)
    attrs = {
        "k": spec.top_k,
        "normalize_routing_weights": int(spec.router.renormalize),
        "use_sparse_mixer": 0,
        "activation_type": spec.activation,  # swiglu | relu (gelu refused above)
    }
    if spec.gated:
        attrs.update(swiglu_fusion=1, activation_alpha=1.0, activation_beta=0.0)  # plain silu(g)*u, no clamp
    nodes.append(
        helper.make_node(
            "MoE", [INPUT_NAME, probs, "fc1", "", "fc2"], [OUTPUT_NAME], name="MoE", domain=MS_DOMAIN, **attrs
        )
    )
    layout_text = f"router_t [H,E] fp32; {layout}; swiglu rows interleaved (swiglu_fusion=1)"
    return contrib_model(spec, nodes, inits, "moebench_moe_ort_fused", layout_text, impl=impl, opset=opset)


def contrib_model(
    spec: MoESpec, nodes: list, inits: list, name: str, weights_layout: str, *, impl: str, opset: int
) -> onnx.ModelProto:
    """The graph x -> y around `nodes` (router + one contrib op), with the spec and layout in its metadata."""
    graph = helper.make_graph(
        nodes,
        name,
        [token_tensor_info(INPUT_NAME, spec.dtype, spec.hidden)],
        [token_tensor_info(OUTPUT_NAME, spec.dtype, spec.hidden)],
        inits,
    )
    router_input = "log-sigmoid logits" if spec.router.scoring == "sigmoid" else "logits"
    extra = {"weights_layout": weights_layout, "router_input": router_input}
    meta = spec_metadata(spec, flavor=FLAVOR, impl=impl, extra=extra)
    return make_model(graph, opset=opset, metadata=meta, extra_domains={MS_DOMAIN: 1})
