"""Portable ONNX export: checker, TensorRT static check, ONNX Runtime CPU parity on unseen inputs."""

import pytest
import torch

pytest.importorskip("onnx", reason="needs onnx (pip install 'moebench[export]')")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'moebench[export]')")

from moebench.errors import MoEInputError  # noqa: E402
from moebench.export import features  # noqa: E402
from moebench.export.check import check_onnx, trt_issues  # noqa: E402
from moebench.export.features import unexported_features  # noqa: E402
from moebench.export.file_parity import check_cases, input_cases  # noqa: E402
from moebench.export.graph_common import metadata_of, spec_from_metadata  # noqa: E402
from moebench.export.ort_runner import OrtMoE  # noqa: E402
from moebench.export.portable import build_portable, useful_flop_ratio  # noqa: E402
from moebench.presets import TINY_PRESETS, get_preset  # noqa: E402
from moebench.routing import route  # noqa: E402
from moebench.weights import random_weights  # noqa: E402

EXPORTABLE = [name for name in TINY_PRESETS if unexported_features(get_preset(name), "portable") is None]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("preset", EXPORTABLE)
def test_portable_export_checks_and_runs_on_unseen_inputs(preset, dtype):
    spec = get_preset(preset, dtype)
    weights = random_weights(spec, seed=11)
    model = build_portable(weights, impl="padded_batch")
    assert "full_check" in check_onnx(model)
    assert trt_issues(model) == []
    runner = OrtMoE(model, "cpu")
    cases = input_cases(weights, tokens=(1, 5, 37), seed=123)  # T=0, random T=1/5/37, steered routing
    steered = [c for c in cases if c.expect_experts]
    assert steered, "no steered case: routing different from random inputs was not exercised"
    for case in steered:  # the steering really produced that routing
        _, ids = route(case.x, weights)
        assert ids.sort(dim=-1).values.eq(torch.tensor(sorted(case.expect_experts))).all()
    results = check_cases(runner.run, weights, cases)
    failed = [f"{r.case}: {r.error or r.result}" for r in results if not r.ok]
    assert not failed, failed
    assert {r.num_tokens for r in results} >= {0, 1, 5, 37}


def test_one_export_serves_other_weights_routing():
    """Export once, then run inputs whose routing pattern the export never saw (all tokens on the last experts)."""
    spec = get_preset("tiny-many", "fp32")
    weights = random_weights(spec, seed=5)
    runner = OrtMoE(build_portable(weights), "cpu")
    out = torch.full((37, spec.hidden), float("nan"))
    x = input_cases(weights, tokens=(37,), seed=9)[-1].x
    result = runner.run(x, out)
    assert result.data_ptr() == out.data_ptr()
    results = check_cases(runner.run, weights, input_cases(weights, tokens=(37,), seed=9))
    assert all(r.ok for r in results), [str(r.result) for r in results]


def test_empty_input_returns_empty_output():
    spec = get_preset("tiny", "fp32")
    runner = OrtMoE(build_portable(random_weights(spec)), "cpu")
    y = runner.run(torch.empty(0, spec.hidden))
    assert y.shape == (0, spec.hidden)


def test_metadata_records_spec_impl_and_flop_ratio():
    spec = get_preset("tiny-odd", "fp16")
    model = build_portable(random_weights(spec), impl="grouped_mm")
    meta = metadata_of(model)
    assert meta["moebench.impl"] == "grouped_mm"
    assert meta["moebench.flavor"] == "portable"
    assert meta["moebench.preset"] == "tiny-odd"
    assert spec_from_metadata(model) == spec
    assert meta["moebench.flop_ratio"].startswith(f"{useful_flop_ratio(spec):g}")


def test_no_data_dependent_or_scatter_ops_in_portable_graph():
    model = build_portable(random_weights(get_preset("tiny-many", "bf16")))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"NonZero", "ScatterND", "ScatterElements", "Loop", "If", "Unique", "Compress"}
    assert all(n.domain == "" for n in model.graph.node)
    assert model.opset_import[0].version >= 18


def test_bf16_exports_but_ort_cpu_has_no_bf16_matmul():
    """bf16 graphs are valid (for CUDA / TensorRT); ONNX Runtime's CPU provider refuses them clearly."""
    model = build_portable(random_weights(get_preset("tiny", "bf16")))
    check_onnx(model)
    assert trt_issues(model) == []
    with pytest.raises(Exception, match="MatMul"):
        OrtMoE(model, "cpu")


def test_opset_range_checked():
    weights = random_weights(get_preset("tiny", "fp32"))
    with pytest.raises(MoEInputError, match="opset"):
        build_portable(weights, opset=17)
    assert build_portable(weights, opset=20).opset_import[0].version == 20


def test_fp64_export_refused():
    with pytest.raises(MoEInputError, match="dtype"):
        build_portable(random_weights(get_preset("tiny", "fp64")))


def test_every_tiny_preset_is_exportable():
    assert list(TINY_PRESETS) == EXPORTABLE  # every spec option has a lowering (export/features.py)


@pytest.mark.parametrize("preset", ["tiny-shared", "tiny-groups", "tiny-oss"])
def test_options_the_lowering_lacks_are_refused_by_name(preset, monkeypatch):
    """An option missing from a lowering's EXPORTED_FEATURES is refused, naming it (never exported wrong)."""
    monkeypatch.setitem(features.EXPORTED_FEATURES, "portable", frozenset())
    spec = get_preset(preset, "fp32")
    first = sorted(spec.features())[0]
    with pytest.raises(MoEInputError, match=first.replace(".", r"\.")):
        build_portable(random_weights(spec, seed=1))
