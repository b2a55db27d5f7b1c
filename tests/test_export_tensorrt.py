"""TensorRT: engine build + parity where TensorRT and a GPU exist; clear refusals everywhere else."""

import pytest
import torch

pytest.importorskip("onnx", reason="needs onnx (pip install 'moebench[export]')")

from moebench.errors import MoEInputError  # noqa: E402
from moebench.export.tensorrt_engine import TokenProfile, tensorrt_missing  # noqa: E402
from moebench.presets import get_preset  # noqa: E402
from moebench.weights import random_weights  # noqa: E402


def test_missing_tensorrt_is_explained():
    reason = tensorrt_missing()
    try:
        import tensorrt  # noqa: F401

        has_trt = True
    except ImportError:
        has_trt = False
    if not has_trt:
        assert reason and "tensorrt" in reason.lower()
    elif not torch.cuda.is_available():
        assert reason and "CUDA" in reason


def test_export_engine_refuses_clearly_without_tensorrt(tmp_path):
    if tensorrt_missing() is None:
        pytest.skip("TensorRT is available here: the refusal path does not apply")
    from moebench.export.exporter import export_engine

    with pytest.raises(MoEInputError, match="format trt"):
        export_engine(random_weights(get_preset("tiny", "fp16")), tmp_path / "m.engine")
    assert (tmp_path / "m.onnx").exists()  # the portable ONNX was still written and checked


def test_profile_is_validated():
    with pytest.raises(MoEInputError, match="profile"):
        TokenProfile(8, 4, 16)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
def test_engine_parity_on_gpu(tmp_path, dtype):
    pytest.importorskip("tensorrt", reason="needs TensorRT's Python package (pip install tensorrt)")
    from moebench.export.exporter import export_engine
    from moebench.export.file_parity import check_cases, input_cases
    from moebench.export.tensorrt_engine import TrtMoE

    weights = random_weights(get_preset("tiny-odd", dtype), device="cuda")
    report = export_engine(weights, tmp_path / "moe.engine", max_tokens=64)
    runner = TrtMoE(report.engine_path)
    results = check_cases(runner.run, weights, input_cases(weights, tokens=(1, 5, 37)))
    failed = [f"{r.case}: {r.error or r.result}" for r in results if not r.ok]
    assert not failed, failed


def test_tensorrt_api_surface_we_use():
    """Where TensorRT is installed (even without a GPU): the calls tensorrt_engine.py makes exist."""
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT's Python package (pip install tensorrt)")
    assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert hasattr(trt.MemoryPoolType, "WORKSPACE")
    for cls, names in (
        (trt.Builder, ("create_network", "create_builder_config", "create_optimization_profile")),
        (trt.Builder, ("build_serialized_network",)),
        (trt.OnnxParser, ("parse_from_file", "get_error")),
        (trt.IBuilderConfig, ("set_memory_pool_limit", "add_optimization_profile")),
        (trt.IOptimizationProfile, ("set_shape",)),
        (trt.Runtime, ("deserialize_cuda_engine",)),
        (trt.ICudaEngine, ("create_execution_context", "get_tensor_name", "get_tensor_profile_shape")),
        (trt.IExecutionContext, ("set_input_shape", "set_tensor_address", "execute_async_v3")),
    ):
        missing = [n for n in names if not hasattr(cls, n)]
        assert not missing, (cls.__name__, missing)
