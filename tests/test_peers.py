"""Peers in the registry: grouped_mm and hf_experts pass the parity gate, unavailable ones say why."""

from __future__ import annotations

import pytest
import torch

from moebench import registry
from moebench.parity import Case, compare, edge_cases, run_case
from moebench.presets import get_preset
from moebench.reference import reference_moe
from moebench.routing import route
from moebench.weights import MoEWeights, random_inputs, random_weights

GROUPED_PRESETS = ("tiny", "tiny-odd", "tiny-k-eq-e", "tiny-many", "tiny-gelu", "tiny-relu")


def _require(name: str):
    info = registry.get(name)
    ok, reason = info.available("cpu")
    if not ok:
        pytest.skip(f"{name}: {reason}")
    return info


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_grouped_mm_parity_gate(dtype):
    info = _require("grouped_mm")
    for preset in GROUPED_PRESETS:
        spec = get_preset(preset, dtype)
        for case in edge_cases(spec)[:4]:  # T=0, T=1, odd T, empty experts
            outcome = run_case(info, spec, case, "cpu", seed=11)
            assert outcome.ok, f"{preset} {dtype} {case.name}: {outcome.error or outcome.result}"


def test_grouped_mm_pads_unaligned_shapes_exactly():
    info = _require("grouped_mm")
    spec = get_preset("tiny-odd", "bf16")  # H=36, I=52: rows not a multiple of 16 bytes in bf16
    weights, x = random_weights(spec, seed=2), random_inputs(spec, 19, seed=3)
    out = info(x, weights)
    layout = weights._derived["grouped_mm/layout"]
    assert layout.hidden == 40 and layout.w2t.shape[1:] == (56, 40)  # [E, Ip, Hp]
    assert compare(out, reference_moe(x, weights), spec.dtype).ok


@pytest.mark.parametrize("preset", ["tiny", "tiny-odd"])
def test_grouped_mm_backward_matches_reference(preset):
    info = _require("grouped_mm")
    assert info.backward
    spec = get_preset(preset, "fp32")
    base = random_weights(spec, seed=5)
    grads = []
    for fn in (lambda x, w: info(x, w), reference_moe):
        params = [p.detach().clone().requires_grad_(True) for p in base.parameters()]
        weights = MoEWeights(spec, *params)
        x = random_inputs(spec, 23, seed=6).requires_grad_(True)
        (fn(x, weights).double() * torch.linspace(-1, 1, spec.hidden, dtype=torch.float64)).sum().backward()
        grads.append([x.grad, *(p.grad for p in params)])
    for got, want in zip(*grads):
        assert compare(got, want, torch.float32, grad=True).ok


def _mixtral_module(num_experts=4, top_k=2, hidden=32, intermediate=48, implementation="eager"):
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralExperts

    config = MixtralConfig(
        num_local_experts=num_experts, num_experts_per_tok=top_k, hidden_size=hidden,
        intermediate_size=intermediate, hidden_act="silu", num_attention_heads=1, num_key_value_heads=1,
    )  # fmt: skip
    config._experts_implementation = implementation
    module = MixtralExperts(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module.gate_up_proj.copy_(torch.randn(module.gate_up_proj.shape, generator=gen) * hidden**-0.5)
        module.down_proj.copy_(torch.randn(module.down_proj.shape, generator=gen) * intermediate**-0.5)
    return module


@pytest.mark.parametrize("implementation", ["eager", "grouped_mm"])
def test_hf_experts_equals_its_own_module_forward(implementation):
    info = _require("hf_experts")
    module = _mixtral_module(implementation=implementation)
    spec = get_preset("tiny", "fp32")  # E=4, k=2, H=32, I=48 like the module
    router = random_weights(spec, seed=9).router
    weights = MoEWeights(spec, router, module.gate_up_proj.detach(), module.down_proj.detach())
    x = random_inputs(spec, 17, seed=10)
    topk_weights, topk_ids = route(x, weights)
    with torch.no_grad():
        expected = module(x, topk_ids, topk_weights)
    got = info(x, weights, config={"experts": {"experts_implementation": implementation}})
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert compare(got, reference_moe(x, weights), spec.dtype).ok


@pytest.mark.parametrize("preset", ["tiny", "tiny-odd", "tiny-gelu", "tiny-relu"])
def test_hf_experts_parity_gate(preset):
    info = _require("hf_experts")
    for dtype in ("fp32", "bf16"):
        spec = get_preset(preset, dtype)
        for case in (Case("T=1", 1), Case("T=37", 37)):
            outcome = run_case(info, spec, case, "cpu", seed=12)
            assert outcome.ok, f"{preset} {dtype} {case.name}: {outcome.error or outcome.result}"


def test_hf_experts_reason_for_old_transformers(monkeypatch):
    from moebench.impls import hf_experts

    monkeypatch.setattr(hf_experts.importlib.metadata, "version", lambda name: "4.46.0")
    hf_experts._version_problem.cache_clear()
    try:
        ok, reason = registry.get("hf_experts").available("cpu")
        assert not ok and "transformers >= 5" in reason and "4.46.0" in reason
    finally:
        monkeypatch.undo()
        hf_experts._version_problem.cache_clear()


def test_unavailable_peers_give_reasons():
    ok, reason = registry.get("vllm_fused").available("cpu")
    assert not ok and reason == "runs on cuda only"
    if not torch.cuda.is_available():
        for name in ("vllm_fused", "grouped_mm", "hf_experts"):
            ok, reason = registry.get(name).available("cuda")
            assert not ok and ("vllm" in reason or "CUDA" in reason), (name, reason)
    info = registry.get("vllm_fused")
    assert info.kind == "peer" and set(info.requires) == {"vllm", "cuda"}


def test_peers_declare_their_dtypes():
    for name in ("grouped_mm", "hf_experts", "vllm_fused"):
        info = registry.get(name)
        assert info.kind == "peer"
        assert {torch.float32, torch.float16, torch.bfloat16} == set(info.dtypes)
