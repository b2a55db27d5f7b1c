"""ONNX Runtime fused flavour: com.microsoft.MoE contract, routing mapping, options, refusals, CPU parity."""

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
from moebench.presets import TINY_PRESETS, get_preset  # noqa: E402
from moebench.spec import RouterSpec  # noqa: E402
from moebench.weights import random_weights  # noqa: E402

# every tiny preset but exact GELU: softmax, sigmoid + renormalise (log-sigmoid logits), and the option presets
# (shared experts, groups + selection bias + scaling, gpt-oss's router and experts, input-scaled k = 1)
EXPRESSIBLE = tuple(name for name in TINY_PRESETS if name != "tiny-gelu")


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
    assert list(moe.input) == ["x", "router_probs_f32", "fc1", "", "fc2"]  # fp32: the router input goes in uncast


def test_unnormalised_weights_are_restored_after_the_op():
    """The op always normalises its k weights; without renormalisation its output is scaled back by sum_k w."""
    model = build_ort_fused(random_weights(get_preset("tiny-odd", "fp32")))  # softmax, no renorm
    moe = next(n for n in model.graph.node if n.op_type == "MoE")
    assert next(a.i for a in moe.attribute if a.name == "normalize_routing_weights") == 1
    last = model.graph.node[-1]
    assert last.op_type == "Mul" and list(last.input) == [moe.output[0], "weight_sum"]


def test_swiglu_rows_are_interleaved_from_canonical_gate_up():
    spec = get_preset("tiny", "fp32")
    weights = random_weights(spec)
    fc1 = fused_weights(weights, LAYOUT_CANONICAL)["fc1"]
    i = spec.intermediate
    assert torch.equal(fc1[:, 0::2], weights.w1[:, :i])  # gate rows
    assert torch.equal(fc1[:, 1::2], weights.w1[:, i:])  # up rows
    assert fused_weight_layout() == LAYOUT_CANONICAL  # onnxruntime installed here documents fc1 [E, G*I, H]


def test_gpt_oss_experts_map_onto_the_ops_attributes_and_biases():
    """tiny-oss: clamped SwiGLU as activation_alpha / activation_beta / swiglu_limit, biases interleaved."""
    weights = random_weights(get_preset("tiny-oss", "fp32"), seed=3)
    spec, i = weights.spec, weights.spec.intermediate
    model = build_ort_fused(weights)
    moe = next(n for n in model.graph.node if n.op_type == "MoE")
    attrs = {a.name: a for a in moe.attribute}
    assert attrs["activation_alpha"].f == pytest.approx(spec.expert.swiglu_alpha)
    assert attrs["activation_beta"].f == spec.expert.swiglu_up_offset == 1.0
    assert attrs["swiglu_limit"].f == spec.expert.swiglu_limit
    assert attrs["normalize_routing_weights"].i == 1
    assert list(moe.input) == ["x", "router_probs_f32", "fc1", "fc1_bias", "fc2", "fc2_bias"]
    fused = fused_weights(weights, LAYOUT_CANONICAL)
    assert torch.equal(fused["fc1_bias"][:, 0::2], weights.b1[:, :i])
    assert torch.equal(fused["fc1_bias"][:, 1::2], weights.b1[:, i:])
    assert torch.equal(fused["fc2_bias"], weights.b2)


@pytest.mark.parametrize("preset", ["tiny", "tiny-many", "tiny-oss", "tiny-groups", "tiny-shared"])
def test_experts_are_chosen_before_the_op(preset):
    """The routing runs in fp32 nodes (TopK) and reaches the op, cast to its type, as its router input;
    shared experts are dense nodes added after it."""
    spec = get_preset(preset, "fp16")
    model = build_ort_fused(random_weights(spec))
    ops = [n.op_type for n in model.graph.node]
    moe = next(n for n in model.graph.node if n.op_type == "MoE")
    assert ops.index("TopK") < ops.index("MoE")
    assert moe.input[1] == "router_probs_f32_d"  # cast to fp16
    assert (ops[-1] == "Add") is bool(spec.shared.count)


VARIANTS = {  # router options not in a preset: weights that do not sum to 1 (scaled back after the op), bias
    "sigmoid, no renormalisation": dict(router=RouterSpec("sigmoid", renormalize=False)),
    "sigmoid, no renorm, scaled": dict(router=RouterSpec("sigmoid", renormalize=False, scaling=1.7)),
    "softmax, scaled": dict(router=RouterSpec("softmax", renormalize=True, scaling=2.5)),
    "softmax, selection bias": dict(router=RouterSpec("softmax", renormalize=False, selection_bias=True)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_router_variants_in_both_dtypes(variant):
    for dtype in ("fp32", "fp16"):
        weights = random_weights(get_preset("tiny-many", dtype).replace(**VARIANTS[variant]), seed=8)
        results = check_cases(OrtMoE(build_ort_fused(weights), "cpu").run, weights, input_cases(weights, (1, 37), 4))
        failed = [f"{r.case}: {r.error or r.result}" for r in results if not r.ok]
        assert not failed, (dtype, failed)


def test_input_weighting_with_k_above_1_is_refused():
    spec = get_preset("tiny-input-scaled", "fp32")
    assert unsupported_reason(spec) is None  # k = 1: the input is scaled before the op
    spec = spec.replace(top_k=2)
    assert "router.weight_on" in unsupported_reason(spec)
    with pytest.raises(MoEInputError, match="weighting its input is expressed only for top_k=1"):
        build_ort_fused(random_weights(spec))


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
