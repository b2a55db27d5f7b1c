"""triton_grouped with the layer options of issue 16 (shared experts, group-limited biased routing,
gpt-oss experts with biases and the clamped SwiGLU, the router weight on the expert's input) against
the fp64 reference, on both paths, in fp32 and fp16, at T = 0, 1, 7 and 333.

The tiny option presets are small so the interpreter runs them in seconds; T = 333 uses large tiles
(fewer interpreted programs; the tiles are not what these tests are about). bf16 is left to the
plain presets (tests/triton_grouped/test_triton_grouped.py): the options' epilogues run in fp32 for
every dtype, and the interpreter's bf16 dot needs its workaround either way.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from moebench import registry
from moebench.impls.common.pairs import describe_shared, layer_pairs
from moebench.parity import Case, run_case
from moebench.presets import get_preset
from moebench.routing import route
from moebench.stats import SHARED_STAT, collect_stats
from moebench.weights import random_inputs, random_weights

pytest.importorskip("triton")

IMPL = "triton_grouped"
SEED = 1616  # fixed inputs: these tests must not depend on luck; `moebench verify` draws fresh ones
OPTION_PRESETS = ("tiny-shared", "tiny-groups", "tiny-oss", "tiny-input-scaled")
# few programs for the interpreter at T = 333 (BLOCK_N and BLOCK_K cover the tiny presets' I and H in one tile)
LARGE_TILES = {
    "path": {"path": "grouped"},
    "gate_up": {"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 64, "GROUP_M": 1, "num_warps": 4, "num_stages": 2},
    "down": {"BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 1, "num_warps": 4, "num_stages": 2},
}


def _run(info, spec, num_tokens, config, triton_device):
    impl = info if config is None else dataclasses.replace(info, fn=functools.partial(info.fn, config=config))
    outcome = run_case(impl, spec, Case(f"T={num_tokens}", num_tokens), triton_device, seed=SEED + num_tokens)
    return outcome.ok, outcome.error or (outcome.result.message if outcome.result else "")


@pytest.fixture(scope="module")
def info():
    """The registered implementation, or a skip with the reason it cannot run here."""
    impl, where = registry.get(IMPL), "cuda" if torch.cuda.is_available() else "cpu"
    return impl if impl.available(where)[0] else pytest.skip(impl.available(where)[1])


def test_every_option_is_honoured(info):
    for preset in OPTION_PRESETS:
        assert info.spec_unsupported(get_preset(preset, "fp32")) is None, preset


@pytest.mark.parametrize("preset", OPTION_PRESETS)
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_parity_with_options(info, triton_device, preset, dtype):
    """Both paths at T = 1 and 7 (fp32 and fp16 swap which path runs which T), T = 0, and T = 333 on the
    grouped path in one of the two dtypes per preset (alternating, to keep the interpreter time down)."""
    spec = get_preset(preset, dtype)
    first, second = ("decode", "grouped") if dtype == "fp32" else ("grouped", "decode")
    runs = [(0, None), (1, {"path": {"path": first}}), (7, {"path": {"path": second}})]
    if (OPTION_PRESETS.index(preset) % 2 == 0) == (dtype == "fp32"):
        runs.append((333, LARGE_TILES))
    failures = []
    for num_tokens, config in runs:
        ok, detail = _run(info, spec, num_tokens, config, triton_device)
        if not ok:
            failures.append(f"T={num_tokens} {config}: {detail}")
    assert not failures, f"{spec.describe()}: " + "; ".join(failures)


def test_shared_experts_are_reported_for_the_bench_rows(info, triton_device):
    spec = get_preset("tiny-shared", "fp32")  # 2 shared experts of I_s = 36, routed I = 24
    weights = random_weights(spec, device=triton_device, seed=SEED)
    x = random_inputs(spec, 3, device=triton_device, seed=SEED)
    with collect_stats() as stats:
        info(x, weights)
    assert stats[SHARED_STAT] == describe_shared(spec)
    assert describe_shared(spec) == (
        "in the grouped GEMMs: 2 x 2 appended expert(s) of I=24 (I_s=36, zero-padded to 48), sigmoid-gated"
    )
    assert describe_shared(get_preset("qwen1.5-moe-a2.7b")).startswith("in the grouped GEMMs: 1 x 4 appended")
    spec = get_preset("tiny-oss", "fp32")  # no shared expert: nothing to report
    with collect_stats() as stats:
        x = random_inputs(spec, 3, device=triton_device, seed=SEED)
        info(x, random_weights(spec, device=triton_device, seed=SEED))
    assert SHARED_STAT not in stats


def test_shared_chunks_follow_in_place_weight_updates():
    """Inference caches the shared experts' chunked copies; an in-place write to the weights must show."""
    spec = get_preset("tiny-input-scaled", "fp32")  # k = 1, one shared expert of I_s = 44 > I = 30
    weights, x = random_weights(spec, seed=SEED), random_inputs(spec, 2, seed=SEED)
    pairs = layer_pairs(x, weights, route(x, weights))
    assert pairs.ids.shape == (2, 1 + 2) and pairs.num_experts == spec.num_experts + 2
    assert pairs.out_weights is None and pairs.in_weights[:, 1:].eq(1).all()  # shared slots take x unscaled
    before = pairs.shared_w1.clone()
    assert torch.equal(layer_pairs(x, weights, route(x, weights)).shared_w1, before)  # cached, same values
    with torch.no_grad():
        weights.shared_w1.mul_(2)
    assert torch.equal(layer_pairs(x, weights, route(x, weights)).shared_w1, 2 * before)
    # chunk 1 holds the shared expert's intermediate columns I .. 2I (its gate rows, then its up rows), zero
    # beyond I_s; shared_w1 [1, 2*I_s, H] is gate rows then up rows
    i, i_s, shared = spec.intermediate, spec.shared.intermediate, weights.shared_w1[0]
    chunk = layer_pairs(x, weights, route(x, weights)).shared_w1[1]
    assert torch.equal(chunk[: i_s - i], shared[i:i_s]) and chunk[i_s - i : i].eq(0).all()
    assert torch.equal(chunk[i:i_s], shared[i_s + i :]) and chunk[i_s:].eq(0).all()
