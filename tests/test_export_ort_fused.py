"""ONNX Runtime fused flavour: com.microsoft.MoE contract, routing mapping, refusals, CPU parity.
Exact and near ties: tests/test_ties.py."""

import pytest
import torch

pytest.importorskip("onnx", reason="needs onnx (pip install 'moebench[export]')")
pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'moebench[export]')")

from moebench.errors import MoEInputError  # noqa: E402
from moebench.export.check import check_onnx, trt_issues  # noqa: E402
from moebench.export.file_parity import check_cases, input_cases  # noqa: E402
from moebench.export.ort_fused import (  # noqa: E402
    LAYOUT_CANONICAL,
    build_ort_fused,
    fused_weight_layout,
    fused_weights,
    unsupported_reason,
)
from moebench.export.ort_runner import OrtMoE  # noqa: E402
from moebench.presets import get_preset  # noqa: E402
from moebench.spec import RouterSpec  # noqa: E402
from moebench.weights import random_weights  # noqa: E402

# every tiny preset but tiny-gelu (exact GELU): softmax with and without renormalisation, sigmoid + renormalise
EXPRESSIBLE = ("tiny", "tiny-odd", "tiny-k-eq-e", "tiny-relu", "tiny-many")
SIGMOID_PLAIN = RouterSpec("sigmoid", renormalize=False)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("preset", EXPRESSIBLE)
def test_fused_parity_on_cpu_provider(preset, dtype):
    weights = random_weights(get_preset(preset, dtype), seed=21)
    model = build_ort_fused(weights)
    check_onnx(model)
    kinds = {n.op_type: n.domain for n in model.graph.node}
    assert kinds["MoE"] == "com.microsoft"
    results = check_cases(OrtMoE(model, "cpu").run, weights, input_cases(weights, tokens=(1, 5, 37), seed=77))
    failed = [f"{r.case}: {r.error or r.result}" for r in results if not r.ok]
    assert not failed, failed


def test_fused_attributes_give_plain_swiglu():
    model = build_ort_fused(random_weights(get_preset("tiny", "fp32")))
    moe = next(n for n in model.graph.node if n.op_type == "MoE")
    attrs = {a.name: a for a in moe.attribute}
    assert attrs["activation_type"].s == b"swiglu"
    assert attrs["swiglu_fusion"].i == 1  # interleaved: the only layout ORT's CPU kernel accepts
    assert attrs["activation_alpha"].f == 1.0 and attrs["activation_beta"].f == 0.0
    assert "swiglu_limit" not in attrs  # no clamp
    assert attrs["k"].i == 2 and attrs["normalize_routing_weights"].i == 1
    assert list(moe.input) == ["x", "router_probs_f32", "fc1", "", "fc2"]  # fp32: no cast of the router input


def test_experts_are_chosen_by_onnx_topk_before_the_op():
    """The op's own top-k is left no choice: the router input is finite only at the k experts TopK chose."""
    model = build_ort_fused(random_weights(get_preset("tiny-many", "fp16")))
    ops = [n.op_type for n in model.graph.node]
    assert ops.index("TopK") < ops.index("Where") < ops.index("MoE")
    assert "Softplus" not in ops


@pytest.mark.parametrize("router", [RouterSpec("softmax", renormalize=False), SIGMOID_PLAIN])
def test_no_renormalisation_scales_the_renormalised_output_back(router):
    model = build_ort_fused(random_weights(get_preset("tiny-many", "fp32").replace(router=router)))
    moe = next(n for n in model.graph.node if n.op_type == "MoE")
    assert next(a.i for a in moe.attribute if a.name == "normalize_routing_weights") == 1
    assert [n.op_type for n in model.graph.node][-1] == "Mul" and list(moe.output) == ["moe_out"]


def test_swiglu_rows_are_interleaved_from_canonical_gate_up():
    spec = get_preset("tiny", "fp32")
    weights = random_weights(spec)
    fc1 = fused_weights(weights, LAYOUT_CANONICAL)["fc1"]
    i = spec.intermediate
    assert torch.equal(fc1[:, 0::2], weights.w1[:, :i])  # gate rows
    assert torch.equal(fc1[:, 1::2], weights.w1[:, i:])  # up rows
    assert fused_weight_layout() == LAYOUT_CANONICAL  # onnxruntime installed here documents fc1 [E, G*I, H]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_sigmoid_without_renorm_is_expressed(dtype):
    spec = get_preset("tiny-many", dtype).replace(router=SIGMOID_PLAIN)
    assert unsupported_reason(spec) is None
    weights = random_weights(spec, seed=5)
    results = check_cases(OrtMoE(build_ort_fused(weights), "cpu").run, weights, input_cases(weights, seed=6))
    failed = [f"{r.case}: {r.error or r.result}" for r in results if not r.ok]
    assert not failed, failed


def test_exact_gelu_is_refused():
    with pytest.raises(MoEInputError, match="tanh approximation"):
        build_ort_fused(random_weights(get_preset("tiny-gelu", "fp32")))


def test_fused_graph_is_flagged_for_tensorrt():
    issues = trt_issues(build_ort_fused(random_weights(get_preset("tiny", "fp32"))))
    assert any("com.microsoft" in i.problem for i in issues)


def test_fused_empty_input():
    spec = get_preset("tiny", "fp16")
    y = OrtMoE(build_ort_fused(random_weights(spec)), "cpu").run(torch.empty(0, spec.hidden, dtype=torch.float16))
    assert y.shape == (0, spec.hidden)
