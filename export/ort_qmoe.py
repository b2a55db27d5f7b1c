"""ort-fused for quantised experts: router MatMul (as ort_fused) -> com.microsoft.QMoE on the packed weights.

What is emitted (onnxruntime 1.32 schema; the weights exactly as moebench.quant.intq stores them, see its
docstring): quant_type='int', expert_weight_bits 4 or 8, block_size = the format's group, weights_prepacked=0,
fcN_experts_weights = codes, fcN_scales = scales [E, N, K/g], fcN_zero_points = zero points (asymmetric
formats only; QMoE's default zero point is the symmetric one, 2^(bits-1)); swiglu rows interleaved alike in
codes, scales and zero points (swiglu_fusion=1, the only layout the CPU kernel runs). The rest is ort_fused's:
the experts chosen before the op, the activation's and SwiGLU options' attributes, expert biases
(fc1/fc2_experts_bias), the routed scaling and the shared experts (dense, unquantised: the spec quantises the
routed experts only) after it.

Refused, with the reason (`qmoe_unsupported`): fp8-block128 (QMoE's CPU provider has no FP8 kernel) and
mxfp4 (on the CPU, quant_type='fp4' was seen to compute int4 instead: a silently different layer); integer
formats whose scales are not in the graph's dtype (QMoE's scales have the input's type T; converting them
would change the weights); K (H for fc1, I for fc2) not a multiple of the group (the schema's rule).

Accuracy on the CPU provider (measured, tests/test_export_qmoe.py): int4 runs weight-only against the
dequantised weights; int8 quantises the activations to int8 too (W8A8), so it is further from the
dequantised reference (rel. L2 a few 1e-3) than the fp32 graphs are.
"""

from __future__ import annotations

import onnx
from onnx import helper

from moebench.errors import MoEInputError
from moebench.export.ffn_graph import shared_initializers
from moebench.export.graph_common import (
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    initializer,
    make_model,
    spec_metadata,
    token_tensor_info,
    used_initializers,
)
from moebench.export.ort_fused import (
    FLAVOR,
    MS_DOMAIN,
    finish_output,
    fused_biases,
    interleave_gate_up,
    op_attributes,
    route_before_op,
    routed_output,
    routing_constants,
)
from moebench.export.routing_graph import node_adder
from moebench.quant.formats import get_format
from moebench.spec import MoESpec
from moebench.weights import MoEWeights


def qmoe_unsupported(spec: MoESpec) -> str | None:
    """Why com.microsoft.QMoE (CPU) cannot run this quantised spec exactly, or None when it can."""
    fmt = get_format(spec.quant)
    if fmt.kind == "fp8":
        return "quant: fp8-block128: ONNX Runtime's QMoE has no FP8 kernel on the CPU provider"
    if fmt.kind == "mxfp4":
        return (
            "quant: mxfp4: QMoE's quant_type='fp4' computes int4 on the CPU provider (a different layer), not emitted"
        )
    if fmt.scale_dtype != spec.dtype:
        return (
            f"quant: {fmt.name} has {fmt.scale} scales but QMoE's scales take the graph dtype {spec.dtype}; "
            "use a format with matching scales (e.g. int4-g128-fp16 for fp16)"
        )
    for name, k in (("hidden", spec.hidden), ("intermediate", spec.intermediate)):
        if k % fmt.group_size:
            return f"quant: QMoE needs {name} ({k}) to be a multiple of the group size {fmt.group_size}"
    return None


def qmoe_tensors(weights: MoEWeights) -> dict[str, object]:
    """fc1/fc2 codes, scales and zero points (or None) in QMoE's layout (swiglu rows interleaved)."""
    spec, quant = weights.spec, weights.quant
    out = {}
    for fc, w in (("fc1", quant.w1), ("fc2", quant.w2)):
        for part in ("data", "scale", "zero"):
            t = getattr(w, part)
            if t is not None:
                t = t.detach().cpu()
                t = interleave_gate_up(t, spec.intermediate) if fc == "fc1" and spec.gated else t
            out[f"{fc}_{part}"] = None if t is None else t.contiguous()
    return out


def build_ort_qmoe(weights: MoEWeights, *, impl: str = "naive_loop", opset: int = MIN_OPSET) -> onnx.ModelProto:
    """Router nodes -> com.microsoft.QMoE. Raises MoEInputError for formats it cannot express."""
    spec = weights.spec
    reason = qmoe_unsupported(spec)
    if reason:
        raise MoEInputError(f"{reason} (spec: {spec.describe()})")
    fmt = get_format(spec.quant)
    tensors = qmoe_tensors(weights)
    biases = fused_biases(weights)
    inits = [initializer(name, t) for name, t in {**tensors, **biases}.items() if t is not None]
    inits += routing_constants(weights) + shared_initializers(spec, weights)
    nodes: list[onnx.NodeProto] = []
    node = node_adder(nodes)
    x_in, probs, scale = route_before_op(spec, node)  # experts chosen before the op (export/ort_fused.py)
    zp = {fc: (f"{fc}_zero" if tensors[f"{fc}_zero"] is not None else "") for fc in ("fc1", "fc2")}
    bias = {fc: (f"{fc}_bias" if biases else "") for fc in ("fc1", "fc2")}
    inputs = [x_in, probs, "fc1_data", "fc1_scale", bias["fc1"], "fc2_data", "fc2_scale", bias["fc2"], "", "", ""]
    inputs += [zp["fc1"], zp["fc2"]]
    while inputs[-1] == "":
        inputs.pop()
    attrs = {
        **op_attributes(spec),
        "quant_type": "int",
        "expert_weight_bits": fmt.bits,
        "block_size": fmt.group_size,
        "weights_prepacked": 0,
    }
    routed = routed_output(spec, scale)
    nodes.append(helper.make_node("QMoE", inputs, [routed], name="QMoE", domain=MS_DOMAIN, **attrs))
    finish_output(spec, node, routed, scale)
    graph = helper.make_graph(
        nodes,
        "moebench_moe_ort_qmoe",
        [token_tensor_info(INPUT_NAME, spec.dtype, spec.hidden)],
        [token_tensor_info(OUTPUT_NAME, spec.dtype, spec.hidden)],
        used_initializers(inits, nodes),
    )
    layout_text = (
        f"router_t [H,E] fp32; QMoE {fmt.name} codes/scales/zero points as moebench.quant stores them; "
        "swiglu rows interleaved (swiglu_fusion=1)"
        + ("; fc1_bias, fc2_bias" if spec.expert.bias else "")
        + ("; shared experts dense, unquantised (shared_w1_cat, shared_w2_cat)" if spec.shared.count else "")
    )
    extra = {"weights_layout": layout_text, "routing": "fp32 nodes before the op (export/routing_graph.py)"}
    meta = spec_metadata(spec, flavor=FLAVOR, impl=impl, extra=extra)
    return make_model(graph, opset=opset, metadata=meta, extra_domains={MS_DOMAIN: 1})
