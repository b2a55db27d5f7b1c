"""Saving exports: external data above the threshold (the > 2 GB path, tested with a tiny threshold)."""

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="needs onnx (pip install 'moebench[export]')")
pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'moebench[export]')")

from moebench.errors import MoEInputError  # noqa: E402
from moebench.export.check import check_onnx, trt_issues  # noqa: E402
from moebench.export.exporter import export_onnx, read_metadata  # noqa: E402
from moebench.export.onnx_io import initializer_bytes, load_model, save_model, uses_external_data  # noqa: E402
from moebench.export.ort_runner import OrtMoE  # noqa: E402
from moebench.export.portable import build_portable  # noqa: E402
from moebench.presets import get_preset  # noqa: E402
from moebench.weights import random_inputs, random_weights  # noqa: E402


def test_external_data_round_trip(tmp_path):
    spec = get_preset("tiny-odd", "fp16")
    weights = random_weights(spec, seed=3)
    model = build_portable(weights)
    saved = save_model(model, tmp_path / "moe.onnx", threshold_bytes=1024)  # tiny threshold: go external
    assert saved.external_data == tmp_path / "moe.onnx.data"
    assert saved.external_data.stat().st_size >= initializer_bytes(model) - 4096
    assert saved.path.stat().st_size < 16 * 1024  # the graph alone
    assert not uses_external_data(model)  # the in-memory model is untouched

    graph_only = load_model(saved.path, load_weights=False)
    assert uses_external_data(graph_only)
    loaded = load_model(saved.path)
    original = {t.name: t.raw_data for t in model.graph.initializer}
    assert {t.name: t.raw_data for t in loaded.graph.initializer} == original

    assert "full_check" in check_onnx(saved.path)
    assert trt_issues(saved.path) == []
    x = random_inputs(spec, 9, seed=4)
    from_file = OrtMoE(saved.path, "cpu").run(x)
    in_memory = OrtMoE(model, "cpu").run(x)
    assert torch.equal(from_file, in_memory)


def test_small_models_stay_single_file_and_stale_data_is_removed(tmp_path):
    model = build_portable(random_weights(get_preset("tiny", "fp32")))
    save_model(model, tmp_path / "m.onnx", threshold_bytes=1024)
    assert (tmp_path / "m.onnx.data").exists()
    saved = save_model(model, tmp_path / "m.onnx")  # default threshold: inline
    assert saved.external_data is None
    assert not (tmp_path / "m.onnx.data").exists()
    assert not uses_external_data(onnx.load_model(str(saved.path)))


def test_export_onnx_reports_checks_and_metadata(tmp_path):
    weights = random_weights(get_preset("tiny", "fp32"))
    report = export_onnx(weights, tmp_path / "e.onnx", flavor="portable", impl="naive_loop", external_threshold=1024)
    text = "\n".join(report.lines())
    assert "external data" in text and "TensorRT-compatibility check passed" in text
    assert read_metadata(report.onnx_path)["moebench.impl"] == "naive_loop"


def test_bad_suffix_is_refused(tmp_path):
    with pytest.raises(MoEInputError, match=r"\.onnx"):
        save_model(build_portable(random_weights(get_preset("tiny", "fp32"))), tmp_path / "m.bin")
