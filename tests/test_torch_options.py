"""Every torch implementation against the fp64 reference on the tiny presets of the new options (shared
experts, groups with selection bias, gpt-oss experts, input weighting), forward at T in {0, 1, 7, 333} in
fp32 and bf16, and gradients of every parameter (biases and shared experts included); what hf_experts and
vllm_fused refuse, with the reason; and how each implementation ran the shared experts (the bench row's note)."""

import pytest
import torch

from moebench import registry
from moebench.activations import DENSE_SHARED
from moebench.errors import MoEInputError
from moebench.gradparity import KINK_NOTE, run_grad_case
from moebench.layer_options import ExpertSpec, SharedSpec
from moebench.parity import Case, run_case
from moebench.presets import get_preset
from moebench.stats import SHARED_STAT, collect_stats
from moebench.weights import random_inputs, random_weights

OPTION_PRESETS = ("tiny-shared", "tiny-groups", "tiny-oss", "tiny-input-scaled")
TORCH_IMPLS = ("naive_loop", "padded_batch", "padded_batch_capacity", "grouped_mm", "hf_experts")
HONOURS_ALL = TORCH_IMPLS  # each of them honours every option of these presets
SEED = 20250916


def _impl(name: str) -> registry.ImplInfo:
    info = registry.get(name)
    ok, reason = info.available("cpu")
    if not ok:
        pytest.skip(reason)
    return info


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("tokens", [0, 1, 7, 333])
@pytest.mark.parametrize("preset", OPTION_PRESETS)
@pytest.mark.parametrize("name", TORCH_IMPLS)
def test_forward_matches_the_reference(name, preset, tokens, dtype):
    info, spec = _impl(name), get_preset(preset, dtype)
    refused = info.spec_unsupported(spec)
    if refused:
        assert name not in HONOURS_ALL, refused
        pytest.skip(refused)
    outcome = run_case(info, spec, Case(f"T={tokens}", tokens), "cpu", seed=SEED + tokens)
    assert outcome.ok, outcome.error or outcome.result.message


@pytest.mark.parametrize("preset", OPTION_PRESETS)
@pytest.mark.parametrize("name", ["naive_loop", "padded_batch", "grouped_mm"])
def test_gradients_of_every_parameter(name, preset):
    info, spec = _impl(name), get_preset(preset, "fp32")
    outcome = run_grad_case(info, spec, Case("T=7", 7), "cpu", seed=SEED)
    assert outcome.ok, outcome.summary()
    assert set(outcome.names) == {"x", *random_weights(spec).parameter_names()}
    assert len(outcome.names) > 4 or spec.shared.count == 0  # biases / shared experts are checked too


def test_the_forward_gate_fails_a_layer_that_skips_an_option():
    """A deliberately wrong implementation (drops the shared experts) fails the gate on tiny-shared."""
    name = "test_no_shared"
    naive = registry.get("naive_loop")
    registry.register(name, kind="loop", description="naive_loop without shared experts", features=naive.features)(
        lambda x, w, **kw: naive.fn(x, w.with_tensors(shared_w2=torch.zeros_like(w.shared_w2)), **kw)
    )
    try:
        outcome = run_case(registry.get(name), get_preset("tiny-shared", "fp32"), Case("T=7", 7), "cpu", seed=1)
        assert outcome.result is not None and not outcome.ok
    finally:
        registry.unregister(name)


@pytest.mark.parametrize(
    "name, preset, path",
    [
        ("grouped_mm", "tiny-groups", "grouped GEMMs"),  # shared intermediate == I: extra experts
        ("grouped_mm", "tiny-shared", DENSE_SHARED),  # another size: a dense pair
        ("naive_loop", "tiny-groups", DENSE_SHARED),
        ("padded_batch_capacity", "tiny-input-scaled", DENSE_SHARED),
    ],
)
def test_the_implementation_says_how_it_ran_the_shared_experts(name, preset, path):
    info, spec = _impl(name), get_preset(preset, "fp32")
    with collect_stats() as stats:
        info(random_inputs(spec, 5), random_weights(spec))
    assert stats[SHARED_STAT].startswith(path)


def test_vllm_fused_refuses_what_it_is_not_fed_with_the_reason():
    """Declared capabilities only (vLLM does not run here): routing options are ours, the rest is refused."""
    info = registry.get("vllm_fused")
    assert info.spec_unsupported(get_preset("tiny-groups", "bf16").replace(shared=SharedSpec())) is None
    for preset, option in [("tiny-shared", "shared"), ("tiny-oss", "expert.bias"), ("tiny-input-scaled", "weight_on")]:
        reason = info.spec_unsupported(get_preset(preset, "bf16"))
        assert reason and option in reason and "vllm_fused does not honour" in reason, reason
    assert "'swiglu' only" in info.spec_unsupported(get_preset("tiny-gelu", "bf16"))


@pytest.mark.parametrize(
    "changes, reason",
    [
        (dict(activation="gelu", shared=SharedSpec(1, 8)), "Qwen2MoeMLP"),
        (
            dict(
                expert=ExpertSpec(swiglu_alpha=1.702, swiglu_limit=7.0, swiglu_up_offset=1.0), shared=SharedSpec(1, 8)
            ),
            "Qwen2MoeMLP",
        ),
        (dict(expert=ExpertSpec(swiglu_alpha=1.702, swiglu_up_offset=1.0)), "always clamps"),
        (dict(expert=ExpertSpec(swiglu_limit=7.0)), "always adds 1"),
    ],
)
def test_hf_experts_refuses_what_transformers_cannot_express(changes, reason):
    refused = registry.get("hf_experts").spec_unsupported(get_preset("tiny", "fp32").replace(**changes))
    assert refused and reason in refused, refused


@pytest.mark.parametrize("seed, second_reading", [(SEED, False), (1, True)])
@pytest.mark.parametrize("name", ["naive_loop", "grouped_mm"])
def test_bf16_gradients_of_the_clamped_swiglu(name, seed, second_reading):
    """16-bit rounding moves some h1 across the clamp's limit; the gate reads h1 both ways (gradparity). Seed 1
    is a draw where only the second reading (h1 rounded to bf16 before the activation) passes."""
    outcome = run_grad_case(_impl(name), get_preset("tiny-oss", "bf16"), Case("T=333", 333), "cpu", seed=seed)
    assert outcome.ok, outcome.summary()
    assert any(KINK_NOTE in r.message for r in outcome.results.values()) == second_reading


def test_the_second_reading_of_the_clamp_does_not_pass_a_wrong_gradient():
    """A layer whose down projection is 10% off fails the bf16 gradient gate on tiny-oss under either reading."""
    name = "test_wrong_w2"
    naive = registry.get("naive_loop")
    registry.register(name, kind="loop", description="naive_loop, w2 10% off", backward=True, features=naive.features)(
        lambda x, w, **kw: naive.fn(x, w.with_tensors(w2=w.w2 * 1.1), **kw)
    )
    try:
        outcome = run_grad_case(registry.get(name), get_preset("tiny-oss", "bf16"), Case("T=333", 333), "cpu", seed=1)
        assert outcome.error is None and not outcome.ok, outcome.summary()
    finally:
        registry.unregister(name)


def test_hf_experts_refuses_a_gpt_oss_module_that_ignores_the_spec_swiglu(monkeypatch):
    """A transformers version whose GptOssExperts fixed alpha at 1.702 would compute another layer: refused."""
    info = _impl("hf_experts")
    from transformers.models.gpt_oss import modeling_gpt_oss

    init = modeling_gpt_oss.GptOssExperts.__init__

    def fixed_alpha(self, config):
        init(self, config)
        self.alpha = 1.702

    monkeypatch.setattr(modeling_gpt_oss.GptOssExperts, "__init__", fixed_alpha)
    spec = get_preset("tiny-oss", "fp32")
    spec = spec.replace(expert=ExpertSpec(swiglu_alpha=1.5, swiglu_limit=2.0, swiglu_up_offset=1.0, bias=True))
    with pytest.raises(MoEInputError, match="GptOssExperts does not take them"):
        info(random_inputs(spec, 3), random_weights(spec))
