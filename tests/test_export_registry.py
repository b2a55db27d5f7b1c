"""Deployed registry entries: availability with reasons, and the parity gate on the CPU provider."""

import pytest
import torch

from moebench import registry
from moebench.parity import Case, run_case
from moebench.presets import get_preset

DEPLOYED = ("ort-cpu:portable", "ort-cpu:ort-fused", "ort-cuda:portable", "ort-cuda:ort-fused", "tensorrt")


def test_deployed_entries_are_registered_with_kind_deployed():
    for name in DEPLOYED:
        info = registry.get(name)
        assert info.kind == "deployed"
        assert not info.graph_safe


def test_unavailable_entries_say_why():
    for name in DEPLOYED:
        info = registry.get(name)
        for device in ("cpu", "cuda"):
            ok, reason = info.available(device)
            assert ok or reason, (name, device)
    ok, reason = registry.get("ort-cuda:portable").available("cpu")
    assert not ok and "cuda" in reason
    if not torch.cuda.is_available():
        ok, reason = registry.get("tensorrt").available("cuda")
        assert not ok and reason
    ok, reason = registry.get("ort-cuda:portable").available("cuda")
    if not ok:
        assert "CUDA" in reason or "onnxruntime" in reason


def test_ort_cpu_entries_list_no_bf16():
    assert not registry.get("ort-cpu:portable").supports(torch.bfloat16)
    assert registry.get("ort-cpu:portable").supports(torch.float16)
    assert registry.get("ort-cuda:portable").supports(torch.bfloat16)


def test_fused_entry_exposes_spec_reason():
    info = registry.get("ort-cpu:ort-fused")
    pytest.importorskip("onnx", reason="needs onnx")
    assert "gelu" in info.spec_unsupported(get_preset("tiny-gelu", "fp32")).lower()
    assert info.spec_unsupported(get_preset("tiny-many", "fp32")) is None
    assert "bfloat16" in info.spec_unsupported(get_preset("tiny-many", "bf16"))
    assert registry.get("ort-cpu:portable").spec_unsupported(get_preset("tiny-gelu", "fp32")) is None


@pytest.mark.parametrize("name", ["ort-cpu:portable", "ort-cpu:ort-fused"])
@pytest.mark.parametrize("case", [Case("T=0", 0), Case("T=37", 37), Case("all on expert 0", 21, always=(0,))])
def test_parity_gate_on_cpu_provider(name, case):
    info = registry.get(name)
    ok, reason = info.available("cpu")
    if not ok:
        pytest.skip(reason)
    for dtype in ("fp32", "fp16"):
        outcome = run_case(info, get_preset("tiny-odd", dtype), case, "cpu", seed=5)
        assert outcome.ok, (dtype, outcome.error, outcome.result)


def test_session_is_built_once_per_weights():
    info = registry.get("ort-cpu:portable")
    if not info.available("cpu")[0]:
        pytest.skip(info.available("cpu")[1])
    from moebench.weights import random_inputs, random_weights

    spec = get_preset("tiny", "fp32")
    weights = random_weights(spec)
    info(random_inputs(spec, 3), weights)
    runner = weights._derived["ort-cpu:portable"]
    info(random_inputs(spec, 8), weights)
    assert weights._derived["ort-cpu:portable"] is runner
