"""The ONNX Runtime flavour: ONNX Runtime's `com.microsoft.MoE` contrib op for the routed experts, ordinary
nodes for what the op lacks (routing it cannot do itself, the shared experts).

The op's contract (onnxruntime 1.32 schema, checked against its CPU kernel by running it):
  inputs  (input[T,H], router_probs[T,E], fc1_experts_weights, fc1_experts_bias?, fc2_experts_weights,
           fc2_experts_bias?, fc3_experts_weights?, fc3_experts_bias?), all of type T in {f32, f16, bf16};
  fc1: [E, G*I, H] and fc2: [E, H, I], i.e. our canonical layout (older releases documented
       fc1 [E, H, G*I] / fc2 [E, I, H]; `fused_weight_layout` reads the installed schema);
  fc1 bias [E, G*I] (rows in fc1's order), fc2 bias [E, H]: y = sum_k w_k * (fc2_k a + b2_k), the down bias
       weighted like the expert's output (measured on the CPU kernel), as in the spec;
  router_probs are LOGITS: the op applies softmax over all E, takes the top k, and divides by
       their sum when normalize_routing_weights=1. The plain MoE op has no separate `router_weights`
       input (in 1.32 only the quantized QMoE has one), so selection and weighting are tied;
  activation_type "swiglu": G*sigmoid(alpha*G)*(L+beta) with G clamped above and L to [-limit, limit] by
       swiglu_limit: the spec's clamped SwiGLU with alpha = swiglu_alpha, beta = swiglu_up_offset;
  swiglu_fusion 1 = gate/up interleaved per row pair [g0,u0,g1,u1,...], 2 = concatenated [g|u];
       the CPU kernel accepts only 1, so our [gate; up] rows (and b1) are interleaved at export;
  activation_type "gelu" is the tanh approximation (measured: matches tanh-GELU to 2e-7, exact
       GELU only to 2e-4), so specs with exact GELU are refused rather than silently changed.

Routing: the op could run its own softmax and top-k on its router input, but in its type T (fp16/bf16
logits rounded) and breaking exact ties otherwise than ONNX TopK and torch.topk (measured on the 1.32 CPU
kernel, k=1: of equal router inputs it takes the highest index). So the experts are always chosen before the op, by
export/routing_graph.py (every RouterSpec option, fp32, ONNX TopK: lower index first, as the portable
graph), and the op is handed
    router_probs = log(w / max_k w) at the k chosen experts (floored at log(MIN_WEIGHT)), NOT_CHOSEN_LOGIT
                   (-30000) at the others,   normalize_routing_weights = 1,
so its top-k has exactly k candidates above -30000 and must take them whatever its tie-breaking, and its
softmax over them gives w_i / sum_k w. Where the spec's weights do not sum to 1 (no renormalisation, or
scaling) the op's output is multiplied by sum_k w per token (the output is linear in the weights, the down
bias included), or by the constant scaling when they sum to it. The log-ratios are in [-69, 0]: rounding
them to fp16/bf16 costs a relative weight error of about |log(w / max w)| * unit roundoff. Weight on the
input (Llama-4) is exact for k = 1 only: x is scaled by the token's one weight before the op, whose weight
is then 1; k > 1 is refused.
The shared experts are export/ffn_graph.py's dense nodes, added to the op's output.
"""

from __future__ import annotations

import re

import onnx
import torch
from onnx import helper

from moebench.errors import MoEInputError
from moebench.export.ffn_graph import activation_initializers, shared_experts, shared_initializers
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
    used_initializers,
)
from moebench.export.routing_graph import (
    NodeFn,
    chosen_mask,
    dense_routing,
    node_adder,
    routing_initializers,
)
from moebench.spec import MoESpec
from moebench.weights import MoEWeights

FLAVOR = "ort-fused"
MS_DOMAIN = "com.microsoft"
LAYOUT_CANONICAL = "fc1[E,G*I,H] fc2[E,H,I]"  # onnxruntime >= 1.2x schema (1.32 here)
LAYOUT_TRANSPOSED = "fc1[E,H,G*I] fc2[E,I,H]"  # older releases' documented layout
NOT_CHOSEN_LOGIT = -30000.0  # router_probs of the experts not chosen: finite in fp16, exp() is 0 in fp32
MIN_WEIGHT = 1e-30  # floor of the weight ratios (and of their max): log() of a chosen expert stays >= -69


def unsupported_reason(spec: MoESpec) -> str | None:
    """Why com.microsoft.MoE cannot compute this spec exactly, or None when it can."""
    if spec.activation == "gelu":
        return (
            "activation: com.microsoft.MoE's 'gelu' is the tanh approximation but the spec's gelu is exact "
            "(erf); use --flavor portable"
        )
    if spec.router.weight_on == "input" and spec.top_k > 1:
        return (
            "router.weight_on: com.microsoft.MoE weights each expert's output; weighting its input is expressed "
            f"only for top_k=1 (the input scaled before the op), got top_k={spec.top_k}; use --flavor portable"
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


def interleave_gate_up(t: torch.Tensor, i: int) -> torch.Tensor:
    """[E, 2I, ...] gate rows then up rows -> rows g0, u0, g1, u1, ... (swiglu_fusion=1)."""
    return torch.stack([t[:, :i], t[:, i:]], dim=2).reshape(t.shape)


def fused_weights(weights: MoEWeights, layout: str | None = None) -> dict[str, torch.Tensor]:
    """The routed experts in the op's layout: fc1 rows interleaved [g0,u0,g1,u1,...] for swiglu, and
    fused_biases."""
    spec = weights.spec
    layout = layout or fused_weight_layout()
    w1, w2 = weights.w1.detach().cpu(), weights.w2.detach().cpu()
    if spec.gated:
        w1 = interleave_gate_up(w1, spec.intermediate)
    if layout == LAYOUT_TRANSPOSED:
        w1, w2 = w1.transpose(1, 2), w2.transpose(1, 2)
    return {"fc1": w1.contiguous(), "fc2": w2.contiguous(), **fused_biases(weights)}


def fused_biases(weights: MoEWeights) -> dict[str, torch.Tensor]:
    """fc1_bias (interleaved like fc1's rows for swiglu) and fc2_bias with expert biases, else nothing: the same
    inputs of com.microsoft.MoE and QMoE."""
    spec = weights.spec
    if not spec.expert.bias:
        return {}
    b1 = weights.b1.detach().cpu()
    b1 = interleave_gate_up(b1, spec.intermediate) if spec.gated else b1
    return {"fc1_bias": b1.contiguous(), "fc2_bias": weights.b2.detach().cpu().contiguous()}


def op_attributes(spec: MoESpec) -> dict:
    """The attributes com.microsoft.MoE and QMoE share: k, the routing handed over (see the module docstring)
    and the activation with the SwiGLU options."""
    attrs = {
        "k": spec.top_k,
        "normalize_routing_weights": 1,  # softmax over the k chosen log-ratios: w_i / sum_k w
        "use_sparse_mixer": 0,
        "activation_type": spec.activation,  # swiglu | relu (gelu refused above)
    }
    if spec.gated:
        x = spec.expert
        attrs.update(swiglu_fusion=1, activation_alpha=x.swiglu_alpha, activation_beta=x.swiglu_up_offset)
        if x.swiglu_limit is not None:
            attrs["swiglu_limit"] = x.swiglu_limit
    return attrs


def routed_output(spec: MoESpec, scale: str | None) -> str:
    """Name of the op's output: the graph's output unless a scaling or the shared experts follow."""
    return OUTPUT_NAME if scale is None and not spec.shared.count else "moe_out"


def finish_output(spec: MoESpec, node: NodeFn, routed: str, scale: str | None) -> None:
    """After the op: x the routed scale (route_before_op), + the shared experts (export/ffn_graph.py)."""
    if scale is not None:
        routed = node("Mul", [routed, scale], [OUTPUT_NAME if not spec.shared.count else "moe_out_scaled"])[0]
    if spec.shared.count:
        node("Add", [routed, shared_experts(spec, node)], [OUTPUT_NAME])


def _router_input(spec: MoESpec, node: NodeFn) -> tuple[str, str]:
    """The routing computed before the op: (fp32 [T, E] router_probs = log(w / max_k w) at the chosen
    experts and NOT_CHOSEN_LOGIT elsewhere, fp32 [T, 1] sum of each token's k weights)."""
    combine = dense_routing(spec, node)
    chosen = chosen_mask(node)  # from the ids: a chosen expert whose weight underflowed still counts
    node("Greater", [chosen, "zero_f32"], ["chosen_bool"])
    node("ReduceMax", [combine, "axis_last"], ["weight_max"], keepdims=1)
    node("Max", ["weight_max", "min_weight"], ["weight_max_floor"])  # all k weights 0: ratios 0, not NaN
    node("Div", [combine, "weight_max_floor"], ["weight_ratio"])
    node("Max", ["weight_ratio", "min_weight"], ["weight_ratio_floor"])
    node("Log", ["weight_ratio_floor"], ["log_ratio"])
    probs = node("Where", ["chosen_bool", "log_ratio", "not_chosen_logit"], ["router_probs_f32"])[0]
    total = node("ReduceSum", [combine, "axis_last"], ["weight_sum"], keepdims=1)[0]
    return probs, total


def _routed_scale_constant(spec: MoESpec) -> bool:
    """Whether each token's k weights sum to the constant spec.router.scaling (normalised before scaling)."""
    return spec.router.renormalize or spec.router.softmax_after_topk


def routing_constants(weights: MoEWeights) -> list[onnx.TensorProto]:
    """Initializers of the routing computed before the op (route_before_op)."""
    spec = weights.spec
    return routing_initializers(weights) + [
        scalar_const("min_weight", MIN_WEIGHT, torch.float32),
        scalar_const("not_chosen_logit", NOT_CHOSEN_LOGIT, torch.float32),
        scalar_const("routed_scaling_d", spec.router.scaling, spec.dtype),
    ]


def route_before_op(spec: MoESpec, node: NodeFn) -> tuple[str, str, str | None]:
    """The op's inputs from the routing computed before it: (x or x scaled by its weight under weight_on='input',
    router_probs in the spec dtype for normalize_routing_weights=1, the name the op's output is multiplied by
    afterwards or None)."""
    dt, d = spec.dtype, onnx_dtype(spec.dtype)

    def in_dtype(name: str) -> str:
        return name if dt == torch.float32 else node("Cast", [name], [f"{name}_d"], to=d)[0]

    probs, total = _router_input(spec, node)
    x_in, scale = INPUT_NAME, None
    if spec.router.weight_on == "input":  # top_k = 1 (check_supported): scale x, the op's weight is then 1
        x_in = node("Mul", [INPUT_NAME, in_dtype(total)], ["x_weighted"])[0]
    elif not _routed_scale_constant(spec):
        scale = in_dtype(total)
    elif spec.router.scaling != 1.0:
        scale = "routed_scaling_d"
    return x_in, in_dtype(probs), scale


def build_ort_fused(weights: MoEWeights, *, impl: str = "naive_loop", opset: int = MIN_OPSET) -> onnx.ModelProto:
    """Router nodes -> com.microsoft.MoE (+ scaling, + shared experts); com.microsoft.QMoE for quantised experts
    (moebench.export.ort_qmoe). Raises for specs it cannot express."""
    spec = weights.spec
    check_export_args(spec, opset, FLAVOR)
    check_supported(spec)
    if spec.quant is not None:
        from moebench.export.ort_qmoe import build_ort_qmoe

        return build_ort_qmoe(weights, impl=impl, opset=opset)
    dt = spec.dtype
    layout = fused_weight_layout()
    fused = fused_weights(weights, layout)
    inits = [initializer(name, t) for name, t in fused.items()]
    inits += routing_constants(weights) + activation_initializers(spec) + shared_initializers(spec, weights)
    nodes: list[onnx.NodeProto] = []
    node = node_adder(nodes)
    x_in, probs, scale = route_before_op(spec, node)
    bias = ("fc1_bias", "fc2_bias") if spec.expert.bias else ("", "")
    routed = routed_output(spec, scale)
    op_inputs = [x_in, probs, "fc1", bias[0], "fc2", bias[1]]
    while not op_inputs[-1]:  # optional inputs left out at the end
        op_inputs.pop()
    nodes.append(helper.make_node("MoE", op_inputs, [routed], name="MoE", domain=MS_DOMAIN, **op_attributes(spec)))
    finish_output(spec, node, routed, scale)

    graph = helper.make_graph(
        nodes,
        "moebench_moe_ort_fused",
        [token_tensor_info(INPUT_NAME, dt, spec.hidden)],
        [token_tensor_info(OUTPUT_NAME, dt, spec.hidden)],
        used_initializers(inits, nodes),
    )
    meta = spec_metadata(
        spec,
        flavor=FLAVOR,
        impl=impl,
        extra={
            "weights_layout": f"router_t [H,E] fp32; {layout}; swiglu rows interleaved (swiglu_fusion=1)"
            + ("; fc1_bias, fc2_bias" if spec.expert.bias else "")
            + ("; shared experts dense (shared_w1_cat, shared_w2_cat)" if spec.shared.count else ""),
            "routing": "fp32 nodes before the op (export/routing_graph.py); log(w / max w) at the chosen experts",
        },
    )
    return make_model(graph, opset=opset, metadata=meta, extra_domains={MS_DOMAIN: 1})
