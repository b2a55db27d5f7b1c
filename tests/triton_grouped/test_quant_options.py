"""triton_grouped's quantised kernels with every layer option (shared experts run unquantised beside the
quantised routed experts, group-limited biased routing, gpt-oss expert biases and clamped SwiGLU, the router
weight on the expert's input), on both paths (decode: quant_decode_kernel; grouped: quant_grouped_kernel),
against the fp64 reference on the dequantised experts.

Formats: fp8-block128 (FP8 dots on quantised activations; the shared chunks read the unquantised input, and
h in fp32 for the down layer) and int4-g32-asym (weight-only, packed nibbles with zero points). mxfp4 needs
H and I in whole 32-element groups, which the option presets do not have; tests/hf/test_hf_quant.py runs it on
a gpt-oss layer with biases and the clamped SwiGLU.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from moebench import registry
from moebench.parity import Case, run_case
from moebench.presets import get_preset
from moebench.stats import SHARED_STAT, collect_stats
from moebench.weights import random_inputs, random_weights

pytest.importorskip("triton")

SEED = 1717  # fixed inputs: these tests must not depend on luck; `moebench verify` draws fresh ones
OPTION_PRESETS = ("tiny-shared", "tiny-groups", "tiny-oss", "tiny-input-scaled")
FORMATS = ("fp8-block128", "int4-g32-asym")


@pytest.fixture(scope="module")
def info():
    impl, where = registry.get("triton_grouped"), "cuda" if torch.cuda.is_available() else "cpu"
    return impl if impl.available(where)[0] else pytest.skip(impl.available(where)[1])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", OPTION_PRESETS)
def test_quantised_parity_with_options(info, triton_device, preset, fmt):
    """T = 1 and 7 on both paths (decode with a program per pair and per expert), all tokens on expert 0 (T = 13)
    on the grouped path, T = 0; fp32 for fp8 (its error is the FP8 dot's alone), fp16 for int4 (the dequantised
    tile cast to the activations' dtype)."""
    spec = get_preset(preset, "fp32" if fmt.startswith("fp8") else "fp16").replace(quant=fmt)
    assert info.spec_unsupported(spec) is None
    runs = [("grouped", Case("T=0", 0)), ("grouped", Case("all on expert 0", 13, always=(0,)))]
    runs += [(path, Case(f"T={t}", t)) for path in ("decode", "grouped") for t in (1, 7)]
    failures = []
    for i, (path, case) in enumerate(runs):
        impl = dataclasses.replace(info, fn=functools.partial(info.fn, config={"path": {"path": path}}))
        outcome = run_case(impl, spec, case, triton_device, seed=SEED + i)
        if not outcome.ok:
            failures.append(f"{path} {case.name}: {outcome.error or outcome.result.message}")
    assert not failures, f"{spec.describe()}: " + "; ".join(failures)


@pytest.mark.parametrize("path", ["decode", "grouped"])
def test_paths_agree_and_the_shared_experts_count(info, triton_device, path):
    """Zeroing the shared experts' down weights changes the output (the kernels read them), the routed part
    alone is the same on both paths, and the shared-expert stat names how they ran."""
    spec = get_preset("tiny-shared", "fp32").replace(quant="int8-g128")
    weights = random_weights(spec, device=triton_device, seed=SEED)
    x = random_inputs(spec, 5, device=triton_device, seed=SEED)
    config = {"path": {"path": path}}
    with collect_stats() as stats:
        full = info.fn(x, weights, config=config)
    assert "appended expert" in stats[SHARED_STAT]
    no_shared = weights.with_tensors(shared_w2=torch.zeros_like(weights.shared_w2))
    routed_only = info.fn(x, no_shared, config=config)
    assert (full - routed_only).abs().max() > 1e-3
    torch.testing.assert_close(routed_only, info.fn(x, no_shared, config={"path": {"path": "grouped"}}))
