"""ort-fused for quantised experts: router MatMul (as ort_fused) -> com.microsoft.QMoE on the packed weights.

What is emitted (onnxruntime 1.32 schema; the weights exactly as moebench.quant.intq stores them, see its
docstring): quant_type='int', expert_weight_bits 4 or 8, block_size = the format's group, weights_prepacked=0,
fcN_experts_weights = codes, fcN_scales = scales [E, N, K/g], fcN_zero_points = zero points (asymmetric
formats only; QMoE's default zero point is the symmetric one, 2^(bits-1)); swiglu rows interleaved alike in
codes, scales and zero points (swiglu_fusion=1, the only layout the CPU kernel runs), plain silu(g)*u.

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
from moebench.export.ort_fused import FLAVOR, MS_DOMAIN, interleave_gate_up, route_before_op, routing_constants
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
    extra = sorted(f for f in spec.features() if not f.startswith("router."))
    if extra:
        return f"quant: QMoE export covers the routed experts with any routing, not yet {', '.join(extra)}"
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
    inits = [initializer(name, t) for name, t in tensors.items() if t is not None] + routing_constants(weights)
    nodes: list[onnx.NodeProto] = []
    node = node_adder(nodes)
    x_in, probs, scale = route_before_op(spec, node)  # experts chosen before the op (export/ort_fused.py)
    zp = {fc: (f"{fc}_zero" if tensors[f"{fc}_zero"] is not None else "") for fc in ("fc1", "fc2")}
    inputs = [x_in, probs, "fc1_data", "fc1_scale", "", "fc2_data", "fc2_scale", "", "", "", ""]
    inputs += [zp["fc1"], zp["fc2"]]
    while inputs[-1] == "":
        inputs.pop()
    attrs = {
        "k": spec.top_k,
        "normalize_routing_weights": 1,  # softmax over the k chosen log-ratios: w_i / sum_k w
        "use_sparse_mixer": 0,
        "activation_type": spec.activation,
        "quant_type": "int",
        "expert_weight_bits": fmt.bits,
        "block_size": fmt.group_size,
        "weights_prepacked": 0,
    }
    if spec.gated:
        attrs.update(swiglu_fusion=1, activation_alpha=1.0, activation_beta=0.0)
    routed = OUTPUT_NAME if scale is None else "moe_out"
    nodes.append(helper.make_node("QMoE", inputs, [routed], name="QMoE", domain=MS_DOMAIN, **attrs))
    if scale is not None:
        node("Mul", [routed, scale], [OUTPUT_NAME])
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
    )
    extra = {"weights_layout": layout_text, "routing": "fp32 nodes before the op (export/routing_graph.py)"}
    meta = spec_metadata(spec, flavor=FLAVOR, impl=impl, extra=extra)
    return make_model(graph, opset=opset, metadata=meta, extra_domains={MS_DOMAIN: 1})
