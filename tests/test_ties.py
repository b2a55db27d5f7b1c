"""Near-tied routing: accepted either way for every implementation and both export flavours, and
nowhere else.

Planted routings (every token): an exact tie (two identical router rows), near ties (logits 6e-8,
3e-7 and 1e-6 apart), and a saturated sigmoid (logits 18 and 19: both 1.0 in fp32), always between
the token's k-th and (k+1)-th experts. Triton implementations run where the project runs them
(interpreter on CPU tensors here, compiled on CUDA tensors on a GPU machine); ONNX Runtime CPU
flavours on CPU tensors.
"""

from __future__ import annotations

import pytest
import torch
from runnable_impls import runnable_impls

from moebench import registry
from moebench.parity import Case, CaseOutcome, check_on, compare, expected_output, run_case
from moebench.presets import get_preset
from moebench.reference import reference_from_routing, reference_moe
from moebench.routing import Routing, route, router_logits, router_scores, weights_at
from moebench.weights import MoEWeights, random_inputs, random_weights

TOKENS = 24
SOFTMAX = get_preset("tiny", "fp32")  # E=4, k=2
SIGMOID = get_preset("tiny-many", "fp32")  # E=16, k=4, sigmoid + renormalise
KINDS = {  # name -> (spec, kind, logit gap)
    "exact": (SOFTMAX, "near", 0.0),
    "near-6e-8": (SOFTMAX, "near", 6e-8),
    "near-3e-7": (SIGMOID, "near", 3e-7),
    "near-1e-6": (SOFTMAX, "near", 1e-6),
    "saturated-sigmoid": (SIGMOID, "saturated", 0.0),
}


def planted_tie(spec, kind: str, gap: float, device: str, seed: int = 0) -> tuple[MoEWeights, torch.Tensor]:
    """Weights and inputs where every token's k-th (a = k-1) and (k+1)-th (b = k) experts tie.

    Feature 0 of x is 1 and router column 0 steers: experts 0..k-2 up, experts above b down, so a
    and b compete for the last slot. near: b's router row is a's plus `gap` at the last feature
    (where x is 1), so logit_b - logit_a = gap exactly (0: an exact tie). saturated: logits 30 (the
    experts above), 18 (a) and 19 (b) exactly, all 1.0 after an fp32 sigmoid.
    """
    weights = random_weights(spec, device=device, seed=seed)
    x = random_inputs(spec, TOKENS, device=device, seed=seed + 1).float()
    router = weights.router.float().clone()
    k = spec.top_k
    a, b = k - 1, k
    x[:, 0] = 1
    router[:, 0] = -8.0
    router[:a, 0] = 8.0
    if kind == "near":
        router[b] = router[a]
        router[a, 0] = router[b, 0] = 0.0
        x[:, -1] = 1
        router[a, -1] = 0.0
        router[b, -1] = gap
    else:
        router[: b + 1] = 0.0
        router[:a, 0] = 30.0
        router[a, 0], router[b, 0] = 18.0, 19.0
    return MoEWeights(spec, router.to(spec.dtype), weights.w1, weights.w2), x.to(spec.dtype)


def _dtypes(info) -> list[torch.dtype]:
    half = torch.bfloat16 if info.supports(torch.bfloat16) else torch.float16
    return [d for d in (torch.float32, half) if info.supports(d)]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(("name", "device"), [(info.name, device) for info, device in runnable_impls()])
def test_near_ties_pass_every_implementation(name, device, kind, triton_device):
    # triton_device: the Triton implementations run there (runnable_impls' device for them)
    info = registry.get(name)
    base, how, gap = KINDS[kind]
    for dtype in _dtypes(info):
        spec = base.with_dtype(dtype)
        if info.spec_unsupported(spec):
            continue
        weights, x = planted_tie(spec, how, gap, device)
        outcome = check_on(info, x, weights, CaseOutcome(name, spec, Case(kind, TOKENS), 0))
        assert outcome.ok, f"{name} {kind} {dtype}: {outcome.error or outcome.result}"
        assert outcome.result.ties == TOKENS, "every token's routing is a planted near tie"


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_plants_are_near_ties_that_fp64_routing_decides_otherwise(kind):
    """Every planted token is a near tie; fp64 routing picks b (its logit is higher) everywhere but on
    the exact tie, while the fp32 router keeps a on some tokens: there the old reference, which
    selected on fp64 logits, failed every implementation."""
    spec, how, gap = KINDS[kind]
    weights, x = planted_tie(spec, how, gap, "cpu")
    assert expected_output(x, weights).num_ties == TOKENS
    b = spec.top_k
    ids32 = route(x, weights).ids
    ids64 = route(x.double(), weights, compute_dtype=torch.float64).ids
    if gap or how == "saturated":
        assert bool((ids64 == b).any(dim=1).all())
    if how == "saturated":
        scores = router_scores(router_logits(x, weights.router), spec)
        assert bool((scores[:, : b + 1] == 1.0).all()), "k+1 experts at exactly 1.0 in fp32"
    elif gap <= 6e-8:
        assert not bool((ids32 == b).any(dim=1).all())


def _ort_cpu(flavor: str):
    info = registry.get(f"ort-cpu:{flavor}")
    ok, why = info.available("cpu")
    if not ok:
        pytest.skip(why)
    return info


@pytest.mark.parametrize("flavor", ["portable", "ort-fused"])
def test_export_flavours_break_an_exact_tie_like_torch_topk(flavor):
    """Two equal fp32 scores at the boundary: torch.topk and both exported graphs take the lower-indexed
    expert (a, not b). Before, com.microsoft.MoE's own top-k took the higher one."""
    info = _ort_cpu(flavor)
    spec, how, gap = KINDS["exact"]
    weights, x = planted_tie(spec, how, gap, "cpu")
    expected = expected_output(x, weights)
    assert bool((route(x, weights).ids == spec.top_k - 1).any(dim=1).all()), "torch.topk takes a"
    higher = expected.ref.clone()
    higher[expected.alt_tokens] = expected.alt_rows  # every token on b instead
    out = info(x, weights)
    assert compare(out, reference_moe(x, weights), spec.dtype).ok, "same choice as torch.topk"
    assert not compare(out, higher, spec.dtype).ok


def test_export_flavours_take_the_lowest_indices_among_many_equal_scores():
    """k+1 experts at exactly 1.0 (saturated sigmoid): both graphs take the k lowest indices (ONNX TopK
    returns the lower index first among equal values). torch.topk promises no order among equal values
    (on this CPU it takes experts 0, 1, 2, 4 of 0..4 here); the gate accepts either, it is an exact tie."""
    spec, how, gap = KINDS["saturated-sigmoid"]
    weights, x = planted_tie(spec, how, gap, "cpu")
    lowest = torch.arange(spec.top_k).expand(TOKENS, -1)
    logits = router_logits(x, weights.router, compute_dtype=torch.float64)
    routing = Routing(weights_at(router_scores(logits, spec), lowest, spec), lowest)
    expected = reference_from_routing(x, weights, routing)
    for flavor in ("portable", "ort-fused"):
        assert compare(_ort_cpu(flavor)(x, weights), expected, spec.dtype).ok, flavor


def _routed_by(choose):
    """An implementation computing the layer (fp64, cast) for the routing `choose(x, weights)` returns."""

    def impl(x, weights, *, out=None, config=None):
        topk_ids = choose(x, weights)
        logits = router_logits(x, weights.router, compute_dtype=torch.float64)
        routing = Routing(weights_at(router_scores(logits, weights.spec), topk_ids, weights.spec), topk_ids)
        y = reference_from_routing(x, weights, routing)
        return out.copy_(y) if out is not None else y.to(x.dtype)

    return impl


def _second_choice_for_token_3(x, weights):
    """The router's top-k, except that token 3 takes its (k+1)-th expert instead of its k-th."""
    spec = weights.spec
    ids = torch.topk(router_scores(router_logits(x, weights.router), spec), spec.top_k + 1, dim=-1).indices
    chosen = ids[:, : spec.top_k].clone()
    chosen[3, -1] = ids[3, -1]
    return chosen


@pytest.fixture
def wrong_choice():
    registry.register("wrong_choice", kind="peer", description="test: token 3 takes its (k+1)-th expert")(
        _routed_by(_second_choice_for_token_3)
    )
    yield registry.get("wrong_choice")
    registry.unregister("wrong_choice")


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_a_wrong_choice_fails_where_scores_are_separated(wrong_choice, dtype):
    spec = SOFTMAX.with_dtype(dtype)
    outcome = run_case(wrong_choice, spec, Case("T=24", TOKENS), "cpu", seed=11)
    assert not outcome.ok and outcome.result.ties == 0
    assert outcome.result.worst_row == 3, outcome.result


def test_the_same_wrong_choice_passes_where_it_is_a_tie(wrong_choice):
    weights, x = planted_tie(SOFTMAX, "near", 0.0, "cpu")
    assert bool((_second_choice_for_token_3(x, weights)[3] == SOFTMAX.top_k).any()), "token 3 takes b"
    outcome = check_on(wrong_choice, x, weights, CaseOutcome("wrong_choice", SOFTMAX, Case("tie", TOKENS), 0))
    assert outcome.ok, outcome.result
