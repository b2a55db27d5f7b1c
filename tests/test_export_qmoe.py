"""ort-fused on quantised experts: com.microsoft.QMoE (INT4 / INT8) run by ONNX Runtime's CPU provider,
against the fp64 reference on the dequantised weights.

Stated tolerances (rel. L2): int4 is weight-only on the CPU provider and meets the fp32 table (1e-4);
int8 runs as W8A8 there (activations quantised to int8 too: measured 1.3e-2 to 1.6e-2 on this layer),
so it is held to 4e-2, and must still be closer to the dequantised layer than a wrong layer would be.
The layer options (gpt-oss biases and clamped SwiGLU, shared experts, group-limited routing with scaling, the
router weight on the input) ride on QMoE as on the unquantised MoE op: measured rel. L2 2e-7 to 3e-7 with int4."""

import pytest
import torch

from moebench.errors import MoEInputError
from moebench.parity import compare
from moebench.presets import get_preset
from moebench.reference import reference_moe
from moebench.spec import MoESpec
from moebench.weights import random_inputs, random_weights

pytest.importorskip("onnxruntime")

from moebench.export.exporter import build_model  # noqa: E402
from moebench.export.ort_runner import OrtMoE  # noqa: E402

TOLERANCE = {"int4-g128": 1e-4, "int8-g128": 4e-2}


@pytest.mark.parametrize("fmt", sorted(TOLERANCE))
def test_qmoe_cpu_matches_the_dequantised_reference(fmt):
    spec = MoESpec(8, 2, 128, 256, dtype=torch.float32, quant=fmt)
    weights = random_weights(spec, seed=3)
    runner = OrtMoE(build_model(weights, "ort-fused").SerializeToString(), "cpu")
    for tokens in (1, 16, 128):
        x = random_inputs(spec, tokens, seed=tokens)
        rel = compare(runner.run(x), reference_moe(x, weights), spec.dtype).rel_l2
        assert rel <= TOLERANCE[fmt], (fmt, tokens, rel)


@pytest.mark.parametrize("preset", ["tiny-oss", "tiny-shared", "tiny-groups", "tiny-input-scaled"])
def test_qmoe_carries_the_layer_options(preset):
    spec = get_preset(preset, "fp32").replace(hidden=64, intermediate=32, quant="int4-g32-asym")
    assert spec.features() - {"router.softmax_after_topk"}  # each preset has options beyond the plain layer
    weights = random_weights(spec, seed=5)
    runner = OrtMoE(build_model(weights, "ort-fused").SerializeToString(), "cpu")
    for tokens in (1, 16):
        x = random_inputs(spec, tokens, seed=tokens)
        rel = compare(runner.run(x), reference_moe(x, weights), spec.dtype).rel_l2
        assert rel <= TOLERANCE["int4-g128"], (preset, tokens, rel)


@pytest.mark.parametrize("fmt", ["fp8-block128", "mxfp4"])
def test_qmoe_refuses_formats_the_cpu_kernel_does_not_run(fmt):
    spec = MoESpec(4, 2, 128, 128, dtype=torch.float32, quant=fmt)
    with pytest.raises(MoEInputError, match="quant"):
        build_model(random_weights(spec), "ort-fused")
