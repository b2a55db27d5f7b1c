"""The tuner on a real Triton implementation (interpreter on the CPU): `triton_grouped` on the tiny
preset, one bucket, two configs per kernel; then its forward uses the tuned configs and passes."""

import json

import pytest

from moebench import registry
from moebench.parity import Case, run_case
from moebench.presets import get_preset
from moebench.tuning import cache, lookup_config, tuner
from moebench.tuning.device import device_info


def test_tune_triton_grouped_tiny_and_use_the_result(config_dir, triton_device):
    if "triton_grouped" not in registry.names():
        pytest.skip("triton_grouped is not part of this checkout")
    info = registry.get("triton_grouped")
    ok, reason = info.available(triton_device)
    if not ok:
        pytest.skip(reason)
    spec = get_preset("tiny", "fp32")
    rows = tuner.tune([spec], impls=["triton_grouped"], buckets=[1], device=triton_device, out_dir=config_dir,
                      max_configs=2, progress=False)  # fmt: skip
    status = {r.kernel: r.status for r in rows}
    assert "failed" not in status.values(), [r.detail for r in rows]
    assert status["path"] == "tuned"
    path_file = cache.config_path(config_dir, device_info(triton_device).key, "triton_grouped", "path", spec)
    chosen = json.loads(path_file.read_text())["buckets"]["1"]["config"]["path"]
    runs = ("gate_up", "down") if chosen == "grouped" else ("decode_gate_up", "decode_down")
    for kernel, state in status.items():
        if kernel != "path":
            assert state == ("tuned" if kernel in runs else "skipped"), (kernel, chosen)
    for kernel in ("path", *runs):
        assert lookup_config("triton_grouped", kernel, spec, 1, triton_device) is not None
    outcome = run_case(info, spec, Case("T=1 with tuned configs", 1), triton_device)
    assert outcome.ok, outcome.error or outcome.result
