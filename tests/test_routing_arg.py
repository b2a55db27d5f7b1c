"""routing=: a precomputed Routing is checked by the registry (errors name `routing`) and honoured by every
implementation that takes one: a drawn routing gives the reference's output for that routing."""

import dataclasses

import pytest
import torch

from moebench import registry
from moebench.errors import MoEInputError
from moebench.kernels.common.interpreter import kernel_device
from moebench.parity import compare
from moebench.presets import TINY_PRESETS, get_preset
from moebench.reference import reference_from_routing
from moebench.routing import Routing
from moebench.spec import ROUTING_ONLY, SharedSpec
from moebench.stats import collect_stats
from moebench.weights import random_inputs, random_weights


def drawn_routing(num_tokens: int, num_experts: int, top_k: int, seed: int) -> Routing:
    """Distinct experts per token, uniformly drawn, with weights in (0.1, 1.1): nothing a router would give."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.rand(num_tokens, num_experts, generator=g).argsort(-1)[:, :top_k]
    return Routing(torch.rand(num_tokens, top_k, generator=g) + 0.1, ids)


def _device(info) -> str:
    """Where `info` runs in this test: the Triton implementations on the triton_device fixture's device."""
    return kernel_device() if "triton" in info.requires else "cpu"


def _takers() -> list[str]:
    return [i.name for i in registry.all_impls() if i.takes_routing and i.available(_device(i))[0]]


def _on(routing: Routing, device: str) -> Routing:
    return Routing(routing.weights.to(device), routing.ids.to(device))


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda r: (r.weights, r.ids), "routing: expected a moebench.routing.Routing"),
        (lambda r: Routing(r.weights.double(), r.ids), "routing.weights: expected shape"),
        (lambda r: Routing(r.weights[:, :1], r.ids), "routing.weights: expected shape"),
        (lambda r: Routing(r.weights, r.ids.int()), "routing.ids: expected shape"),
        (lambda r: Routing(r.weights, r.ids + 10), r"routing.ids: expected expert ids in \[0, 4\)"),
        (lambda r: Routing(r.weights, -r.ids - 1), r"routing.ids: expected expert ids in \[0, 4\)"),
        (lambda r: Routing(r.weights * float("nan"), r.ids), "routing.weights: expected finite"),
    ],
)
def test_registry_checks_the_routing_naming_it(bad, match):
    spec = get_preset("tiny", "fp32")
    w, x = random_weights(spec), random_inputs(spec, 5)
    with pytest.raises(MoEInputError, match=match):
        registry.get("naive_loop")(x, w, routing=bad(drawn_routing(5, 4, 2, seed=1)))


def test_an_implementation_that_routes_itself_refuses_a_routing():
    spec = get_preset("tiny", "fp32")
    info = registry.get("ort-cpu:portable")
    assert not info.takes_routing
    with pytest.raises(MoEInputError, match="routing: ort-cpu:portable computes its own routing"):
        info(random_inputs(spec, 3), random_weights(spec), routing=drawn_routing(3, 4, 2, seed=1))


@pytest.mark.parametrize("name", _takers())
@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_every_implementation_honours_a_drawn_routing(name, preset, triton_device):
    info = registry.get(name)
    spec, device = get_preset(preset, "fp32"), _device(info)
    if info.spec_unsupported(spec):
        pytest.skip(info.spec_unsupported(spec))
    w, x = random_weights(spec, seed=3, device=device), random_inputs(spec, 11, seed=4, device=device)
    routing = _on(drawn_routing(11, spec.num_experts, spec.top_k, seed=5), device)
    out = torch.full_like(x, float("nan"))
    with collect_stats() as stats:
        info(x, w, out=out, routing=routing, config={"capacity_factor": 8.0} if info.drops_tokens else None)
    keep = ~stats["dropped_pairs"] if info.drops_tokens else None
    expected = reference_from_routing(x, w, routing, keep=keep)
    result = compare(out, expected, spec.dtype)
    assert result.ok, result.message
    assert not compare(
        out, reference_from_routing(x, w, _on(drawn_routing(11, spec.num_experts, spec.top_k, 6), device)), spec.dtype
    ).ok


@pytest.mark.parametrize("name", ["triton_grouped", "block_sparse"])
def test_options_that_only_shape_the_routing_do_not_count_when_it_is_given(name, triton_device):
    # both honour every option now: a copy that honours none stands for an implementation without them
    info = dataclasses.replace(registry.get(name), features=frozenset(), features_note="not honoured here")
    if not info.available(triton_device)[0]:
        pytest.skip(info.available(triton_device)[1])
    spec = get_preset("tiny-groups", "fp32").replace(shared=SharedSpec())  # selection bias, groups, scaling
    assert spec.features() <= ROUTING_ONLY and info.spec_unsupported(spec)
    w, x = random_weights(spec, seed=3, device=triton_device), random_inputs(spec, 7, seed=4, device=triton_device)
    with pytest.raises(MoEInputError, match="router.selection_bias, router.groups, router.scaling"):
        info(x, w)
    routing = _on(drawn_routing(7, spec.num_experts, spec.top_k, seed=5), triton_device)
    result = compare(info(x, w, routing=routing), reference_from_routing(x, w, routing), spec.dtype)
    assert result.ok, result.message


def test_expert_parallel_local_compute_runs_a_registry_implementation():
    from moebench.ep import reference_local_compute, registry_local_compute, slice_experts

    spec = get_preset("tiny-groups", "fp32")
    local = slice_experts(random_weights(spec, seed=3), [7, 2, 11])
    x = random_inputs(spec, 9, seed=4)
    ids, pair_w = torch.randint(0, 3, (9,)), torch.rand(9)
    got = registry_local_compute("naive_loop")(x, ids, pair_w, local)
    torch.testing.assert_close(got, reference_local_compute(x, ids, pair_w, local), rtol=1e-5, atol=1e-5)
