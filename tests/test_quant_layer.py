"""Quantised experts in the layer: spec and weights, the reference on dequantised weights, the registry's
refusals, and parity of the implementations that run them (Triton in the interpreter on the CPU)."""

import pytest
import torch

import moebench
from moebench import registry
from moebench.errors import MoEInputError
from moebench.parity import Case, run_case
from moebench.reference import reference_moe, reference_unquantized
from moebench.spec import spec_from_dict
from moebench.weights import random_inputs, random_weights

FORMATS = ("fp8-block128", "mxfp4", "int4-g128", "int8-g128", "int4-g32-asym", "int8-g64-asym")


def _spec(fmt: str, dtype: str = "fp32"):
    return moebench.get_preset("tiny-many", dtype).replace(quant=fmt)  # H=64, I=32: mxfp4 fits


def test_spec_quant_round_trip_and_bytes():
    spec = _spec("int4-g128")
    assert spec_from_dict(spec.to_json()) == spec
    assert "quant=int4-g128" in spec.describe()
    weights = random_weights(spec)
    assert spec.expert_weight_bytes() == weights.quant.nbytes
    assert spec.expert_weight_bytes() < spec.replace(quant=None).expert_weight_bytes() / 4
    with pytest.raises(MoEInputError, match="quant: mxfp4 needs intermediate"):
        moebench.get_preset("tiny", "fp32").replace(quant="mxfp4")
    with pytest.raises(MoEInputError, match="quant"):
        moebench.get_preset("tiny", "fp32").replace(quant="int3")


def test_reference_uses_the_dequantised_weights():
    spec = _spec("int4-g128")
    weights = random_weights(spec)
    x = random_inputs(spec, 9)
    w1, w2 = weights.quant.dequantize(torch.float64)
    as_plain = weights.unquantized().to(dtype=torch.float64).with_tensors(w1=w1, w2=w2)
    torch.testing.assert_close(reference_moe(x, weights), reference_moe(x, as_plain), rtol=0, atol=1e-12)
    assert (reference_moe(x, weights) - reference_unquantized(x, weights)).abs().max() > 1e-3


def test_unsupported_impls_refuse_with_the_reason():
    reason = registry.get("padded_batch").spec_unsupported(_spec("fp8-block128"))
    assert reason and "quant=fp8-block128" in reason and "padded_batch" in reason


def _check_parity(impl: str, fmt: str, device: str) -> None:
    info = registry.get(impl)
    ok, why = info.available(device)
    if not ok:
        pytest.skip(why)
    dtype = "bf16" if fmt.startswith(("fp8", "int4")) else "fp32"
    spec = _spec(fmt, dtype)
    for case in (Case("T=1", 1), Case("all tokens on expert 0", 21, always=(0,))):
        outcome = run_case(info, spec, case, device, seed=7)
        assert outcome.ok, (case.name, outcome.error or outcome.result.message)
        assert outcome.extra["rel_l2_unquantized"] > outcome.result.rel_l2


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("impl", ["naive_loop", "grouped_mm"])
def test_dequantise_up_front_parity(impl, fmt):
    _check_parity(impl, fmt, "cpu")


@pytest.mark.parametrize("fmt", FORMATS)
def test_triton_grouped_quantised_parity(fmt, triton_device):
    _check_parity("triton_grouped", fmt, triton_device)


@pytest.mark.parametrize("impl", ["naive_loop", "grouped_mm"])
def test_w8a8_leaves_the_shared_experts_input_unquantised(impl):
    """tiny-groups' shared expert has the routed experts' size, which grouped_mm otherwise runs inside its
    grouped GEMMs: with fp8-block128 those quantise their inputs, and the shared expert's must stay as it is."""
    spec = moebench.get_preset("tiny-groups", "fp32").replace(quant="fp8-block128")
    for case in (Case("T=1", 1), Case("T=9", 9)):
        outcome = run_case(registry.get(impl), spec, case, "cpu", seed=11)
        assert outcome.ok, (case.name, outcome.error or outcome.result.message)
