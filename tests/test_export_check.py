"""The static TensorRT-compatibility check: passes portable graphs, flags what TensorRT rejects."""

import pytest

onnx = pytest.importorskip("onnx", reason="needs onnx (pip install 'moebench[export]')")

from onnx import TensorProto, helper  # noqa: E402

from moebench.export import trt_ops  # noqa: E402
from moebench.export.check import TrtCompatibilityError, check_onnx, check_trt_compatible, trt_issues  # noqa: E402
from moebench.export.portable import build_portable  # noqa: E402
from moebench.presets import get_preset  # noqa: E402
from moebench.weights import random_weights  # noqa: E402


def _portable(preset="tiny", dtype="fp16"):
    return build_portable(random_weights(get_preset(preset, dtype)))


def _plant(model, nodes, outputs=None):
    """A copy of `model` with extra nodes (and extra graph outputs)."""
    planted = onnx.ModelProto()
    planted.CopyFrom(model)
    planted.graph.node.extend(nodes)
    planted.graph.output.extend(outputs or [])
    return planted


@pytest.mark.parametrize("preset", ["tiny", "tiny-many", "tiny-gelu", "tiny-relu"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_portable_graphs_pass(preset, dtype):
    model = _portable(preset, dtype)
    assert trt_issues(model) == []
    check_trt_compatible(model)  # does not raise


def test_planted_nonzero_is_flagged_as_unsupported_shape():
    out = helper.make_tensor_value_info("nz", TensorProto.INT64, None)
    model = _plant(_portable(), [helper.make_node("NonZero", ["scores"], ["nz"], name="planted_nonzero")], [out])
    issues = trt_issues(model)
    assert any(i.op == "NonZero" and "data" in i.problem for i in issues), issues
    assert any(i.node == "nz" and "data-dependent" in i.problem for i in issues), issues
    with pytest.raises(TrtCompatibilityError, match="NonZero"):
        check_trt_compatible(model)


def test_planted_scatternd_reduction_is_flagged():
    node = helper.make_node(
        "ScatterND", ["logits", "topk_ids_3d", "topk_w_3d"], ["scattered"], name="planted_scatter", reduction="add"
    )
    issues = trt_issues(_plant(_portable("tiny", "fp32"), [node]))
    assert any(i.op == "ScatterND" and "reduction='add'" in i.problem for i in issues), issues


def test_planted_unsupported_op_and_custom_domain_and_double():
    nodes = [
        helper.make_node("Unique", ["logits"], ["uniq"], name="planted_unique"),
        helper.make_node("MoE", ["x", "logits"], ["fused"], name="planted_contrib", domain="com.microsoft"),
        helper.make_node("Cast", ["logits"], ["logits64"], name="planted_double", to=TensorProto.DOUBLE),
        helper.make_node("Sigmoid", ["logits64"], ["sig64"], name="planted_double_sigmoid"),
    ]
    model = _plant(_portable("tiny", "fp32"), nodes)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    problems = {(i.node, i.op): i.problem for i in trt_issues(model)}
    assert "not supported" in problems[("planted_unique", "Unique")]
    assert "custom domain" in problems[("planted_contrib", "MoE")]
    assert "DOUBLE" in problems[("planted_double", "Cast")]
    assert "DOUBLE" in problems[("planted_double_sigmoid", "Sigmoid")]


def test_topk_needs_constant_k():
    model = _portable("tiny", "fp32")
    for n in model.graph.node:
        if n.op_type == "TopK":
            n.input[1] = "k_runtime"
    model.graph.node.insert(0, helper.make_node("Shape", ["x"], ["k_runtime_full"], name="k_shape"))
    model.graph.node.insert(
        1, helper.make_node("Slice", ["k_runtime_full", "axis_slot", "axis_slot"], ["k_runtime"], name="k_slice")
    )
    assert any(i.op == "TopK" and "initializer" in i.problem for i in trt_issues(model))


def test_table_names_its_source_and_version():
    assert trt_ops.TRT_VERSION in trt_ops.TRT_SOURCE
    assert "NonZero" in trt_ops.DATA_DEPENDENT_SHAPE_OPS
    assert not set(trt_ops.SUPPORTED) & trt_ops.UNSUPPORTED


def test_checker_runs_full_check_on_portable_and_structural_on_contrib():
    assert "full_check" in check_onnx(_portable())
    contrib = _plant(
        _portable("tiny", "fp32"), [helper.make_node("MoE", ["x", "logits"], ["f"], domain="com.microsoft")]
    )
    contrib.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert "com.microsoft" in check_onnx(contrib)  # full or structural: says which ops were included
