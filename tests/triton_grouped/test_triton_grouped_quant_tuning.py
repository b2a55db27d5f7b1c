"""Tuning triton_grouped on quantised experts: the quant_gemm space per weight format (its BLOCK_K rules,
sampled candidates through the tuner's parity check), and `moebench tune` recording a config that the
quantised forward then launches with."""

import json

import pytest
import torch

from moebench import registry
from moebench.errors import MoEInputError
from moebench.kernels.triton_grouped.quant_space import QUANT_KEYS, quant_default, quant_space
from moebench.parity import Case, run_case
from moebench.presets import get_preset
from moebench.quant.formats import get_format
from moebench.tuning import cache, lookup_config, tunable, tunables, tuner
from moebench.tuning.device import device_info
from moebench.tuning.trial import ForwardCheck
from moebench.weights import random_inputs, random_weights

FORMATS = ("fp8-block128", "mxfp4", "int4-g128", "int8-g128", "int4-g32-asym", "int8-g64-asym")
IMPL = "triton_grouped"


def _info(device: str):
    info = registry.get(IMPL)
    ok, reason = info.available(device)
    if not ok:
        pytest.skip(reason)
    return info


@pytest.mark.parametrize(
    "preset",
    ["tiny+int4-g128", "tiny-many+mxfp4", "tiny+fp8-block128", "mixtral-8x7b+int4-g128", "mixtral-8x7b+mxfp4",
     "mixtral-8x7b+fp8-block128", "qwen3-30b-a3b+int8-g64-asym", "qwen3-30b-a3b+int4-g32"],
)  # fmt: skip
@pytest.mark.parametrize("num_tokens", [1, 64, 4096])
def test_space_follows_the_format_block_rules(preset, num_tokens):
    spec = get_preset(preset, "bf16")
    fmt, longest = get_format(spec.quant), max(spec.hidden, spec.intermediate)
    space = quant_space(spec, num_tokens)
    assert space, preset
    for cfg in [*space, quant_default(spec, num_tokens)]:
        assert tuple(cfg) == QUANT_KEYS
        bk = cfg["BLOCK_K"]
        if fmt.kind == "fp8":  # one activation and one weight scale per K tile, FP8 dots of K >= 32
            assert 128 % bk == 0 and bk >= 32, cfg
        else:  # whole scale groups per K tile, or one tile over all of K
            assert bk % fmt.group_size == 0 or bk >= longest, cfg
    if longest >= 256:  # real layers: only legal K tiles (some pruned by the resource model), the shortest kept
        legal = {bk for bk in (32, 64, 128, 256) if (128 % bk == 0 if fmt.kind == "fp8" else bk % fmt.group_size == 0)}
        offered = {cfg["BLOCK_K"] for cfg in space}
        assert offered <= legal and min(legal) in offered


def test_the_kernels_of_one_kind_of_experts_do_not_tune_on_the_other():
    registry.get(IMPL)  # registers the tunables
    plain, quant = get_preset("tiny", "bf16"), get_preset("tiny+int4-g128", "bf16")
    for t in tunables(IMPL):
        if t.kernel == "quant_gemm":
            assert t.space(plain, 16) == [] and t.space(quant, 16)
        elif t.space(plain, 16):
            assert t.space(quant, 16) == [], t.kernel


@pytest.mark.parametrize("fmt", FORMATS)
def test_sampled_space_configs_pass_the_tuners_parity_check(fmt, triton_device):
    """Two candidates of each format's space (the first and the last) through the check the tuner gates
    winners with (poisoned outputs, fp64 reference, every token row) at the bucket T = 1 and at T = 2."""
    info = _info(triton_device)
    spec = get_preset("tiny-many", "bf16" if fmt.startswith(("fp8", "int4")) else "fp32").replace(quant=fmt)
    space = quant_space(spec, 1)
    device = torch.device(triton_device)
    check = ForwardCheck(info, random_weights(spec, device, seed=3), 1, device)
    check.prepare()
    assert len(space) > 1
    for cfg in (space[0], space[-1]):
        assert check({"quant_gemm": cfg}) is None, cfg


def test_explicit_fp8_block_k_must_divide_the_scale_block(triton_device):
    info = _info(triton_device)
    spec = get_preset("tiny", "bf16").replace(quant="fp8-block128")
    weights = random_weights(spec, triton_device)
    x = random_inputs(spec, 3, triton_device)
    bad = {**quant_default(spec, 3), "BLOCK_K": 256}
    with pytest.raises(MoEInputError, match=r"\['BLOCK_K'\]: fp8-block128 needs a divisor of 128"):
        info(x, weights, config={"quant_gemm": bad}, check=False)
    with pytest.raises(MoEInputError, match=r"config: unknown kernel\(s\) \['quant_gem'\]"):
        info(x, weights, config={"quant_gem": bad}, check=False)


def test_tune_records_quant_gemm_and_the_forward_launches_it(config_dir, triton_device):
    from moebench.compile_check.record import record_launches

    info = _info(triton_device)
    spec = get_preset("tiny+int4-g128", "fp32")
    rows = tuner.tune([spec], impls=[IMPL], buckets=[1], device=triton_device, out_dir=config_dir,
                      max_configs=2, progress=False)  # fmt: skip
    status = {r.kernel: r.status for r in rows}
    assert status.pop("quant_gemm") == "tuned", [r.detail for r in rows]
    assert set(status.values()) == {"skipped"}  # the unquantised kernels do not run here
    path = cache.config_path(config_dir, device_info(triton_device).key, IMPL, "quant_gemm", spec)
    assert path.name.startswith("triton_grouped__quant_gemm__E4-k2-H32-I48-swiglu-fp32-int4-g128__")
    data = json.loads(path.read_text())
    assert data["meta"]["spec"]["quant"] == "int4-g128"
    # timed as the benchmark would: on a GPU this weight-bound bucket cold (L2 flushed before every sample)
    assert data["buckets"]["1"]["cache"] == ("cold" if torch.device(triton_device).type == "cuda" else "warm")
    assert lookup_config(IMPL, "quant_gemm", spec, 1, triton_device) == data["buckets"]["1"]["config"]
    assert lookup_config(IMPL, "quant_gemm", spec.replace(quant=None), 1, triton_device) is None

    # plant a candidate other than the default in the file: the forward must launch with it
    planted = next(c for c in quant_space(spec, 1) if c != quant_default(spec, 1))
    entry = {**data["buckets"]["1"], "config": planted}
    cache.record_buckets(path, cache.signature(tunable(IMPL, "quant_gemm"), spec), data["meta"], {1: entry})
    weights = random_weights(spec, triton_device)
    launches = record_launches(spec, 1, weights=weights)  # T=1: the decode path, which has no GROUP_M
    gemms = [ln for ln in launches if ln.kernel.__name__ == "quant_decode_kernel"]
    assert len(gemms) == 2
    expected = {k: v for k, v in planted.items() if k != "GROUP_M"}
    for launch in gemms:
        assert {k: launch.kwargs[k] for k in expected} == expected
    outcome = run_case(info, spec, Case("T=1 with the planted config", 1), triton_device)
    assert outcome.ok, outcome.error or outcome.result
