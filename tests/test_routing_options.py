"""Each routing, expert and shared option on a small case written out by hand, against the routing path and
the fp64 reference; the routing path's graph safety on meta tensors."""

import math

import pytest
import torch

from moebench.activations import apply_activation
from moebench.presets import TINY_PRESETS, get_preset
from moebench.reference import reference_from_routing, reference_moe
from moebench.routing import Routing, route, route_from_logits
from moebench.spec import ExpertSpec, MoESpec, RouterSpec, SharedSpec
from moebench.weights import MoEWeights, empty_weights, random_inputs, random_weights

F64 = torch.float64


def logit(p: list[float]) -> torch.Tensor:
    """Logits whose sigmoid is p (so the scores below are the numbers written)."""
    t = torch.tensor(p, dtype=F64)
    return torch.log(t / (1 - t))


def test_group_limited_selection_with_selection_bias_by_hand():
    """E=4 in groups {0,1} {2,3}, best 1 group, k=2, selection bias +0.2 on expert 2, scaling 2.
    token 0: scores .9 .1 .6 .55 -> choice .9 .1 .8 .55; group sums 1.0 vs 1.35 -> group 1, although
             expert 0 is the best single expert; weights from the UNBIASED scores: .6/1.15, .55/1.15, x2.
    token 1: scores .2 .3 .25 .1 -> choice .2 .3 .45 .1; sums .5 vs .55 -> group 1 (unbiased it would be
             group 0: .5 vs .35): weights .25/.35, .1/.35, x2."""
    router = RouterSpec("sigmoid", renormalize=True, selection_bias=True, groups=2, topk_groups=1, scaling=2.0)
    spec = MoESpec(4, 2, 8, 8, dtype=F64, router=router)
    logits = torch.stack([logit([0.9, 0.1, 0.6, 0.55]), logit([0.2, 0.3, 0.25, 0.1])])
    bias = torch.tensor([0.0, 0.0, 0.2, 0.0])
    weights, ids = route_from_logits(logits, spec, bias)
    assert ids.tolist() == [[2, 3], [2, 3]]
    expected = torch.tensor([[0.6 / 1.15, 0.55 / 1.15], [0.25 / 0.35, 0.1 / 0.35]], dtype=F64) * 2
    torch.testing.assert_close(weights, expected, rtol=1e-12, atol=0)
    assert route_from_logits(logits, spec, torch.zeros(4)).ids[1].sort().values.tolist() == [0, 1]


def test_group_score_is_the_sum_of_the_top_two():
    """groups {0,1,2} {3,4,5}: group 0 has the best expert (.95) but its top-2 sum .95+.1 < .6+.55."""
    router = RouterSpec("sigmoid", renormalize=False, groups=2, topk_groups=1)
    spec = MoESpec(6, 1, 8, 8, dtype=F64, router=router)
    weights, ids = route_from_logits(logit([0.95, 0.1, 0.05, 0.6, 0.55, 0.5])[None], spec)
    assert ids.tolist() == [[3]]
    torch.testing.assert_close(weights, torch.tensor([[0.6]], dtype=F64), rtol=1e-12, atol=0)


def test_softmax_after_topk_and_router_bias_by_hand():
    """gpt-oss: logits x.router + bias = [1, 3, 2, 0] -> top-2 ids [1, 2], softmax([3, 2])."""
    spec = MoESpec(4, 2, 2, 8, dtype=F64, router=RouterSpec(renormalize=False, softmax_after_topk=True, bias=True))
    x = torch.tensor([[1.0, 0.0]], dtype=F64)
    router = torch.tensor([[2.0, 0], [1.0, 0], [1.5, 0], [0.5, 0]], dtype=F64)
    bias = torch.tensor([-1.0, 2.0, 0.5, -0.5], dtype=F64)
    w = MoEWeights(spec, router, torch.zeros(4, 16, 2, dtype=F64), torch.zeros(4, 2, 8, dtype=F64), router_bias=bias)
    weights, ids = route(x, w, compute_dtype=F64)
    e = math.e
    assert ids.tolist() == [[1, 2]]
    torch.testing.assert_close(weights, torch.tensor([[e / (e + 1), 1 / (e + 1)]], dtype=F64), rtol=1e-12, atol=0)


def test_clamped_swiglu_with_alpha_and_offset_by_hand():
    """gate [2, -3, .5] -> min(., 1) = [1, -3, .5]; up [3, -.5, -2] -> clamp +-1 = [1, -.5, -1];
    out = gate * sigmoid(1.702 gate) * (up + 1)."""
    spec = MoESpec(2, 1, 8, 3, dtype=F64, expert=ExpertSpec(1.702, 1.0, 1.0))
    h1 = torch.tensor([[2.0, -3.0, 0.5, 3.0, -0.5, -2.0]], dtype=F64)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = [1 * sig(1.702) * 2, -3 * sig(-3 * 1.702) * 0.5, 0.5 * sig(0.5 * 1.702) * 0]
    torch.testing.assert_close(apply_activation(spec, h1), torch.tensor([expected], dtype=F64), rtol=1e-12, atol=0)


def _one_token_layer(spec: MoESpec, **extra) -> tuple[MoEWeights, torch.Tensor]:
    """H=2, I=1: expert 0's gate reads x0 and up reads x1, its down writes [1, 2]; expert 1 is zero.
    router rows [1, 0] and [0, 0]: for x = [2, 3] the logits are [2, 0], so expert 0 is chosen."""
    w1 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]], dtype=F64)
    w2 = torch.tensor([[[1.0], [2.0]], [[0.0], [0.0]]], dtype=F64)
    router = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64)
    return MoEWeights(spec, router, w1, w2, **extra), torch.tensor([[2.0, 3.0]], dtype=F64)


def silu(v: float) -> float:
    return v / (1 + math.exp(-v))


def test_input_scaled_weight_by_hand():
    """Llama-4: y = FFN_0(s * x) with s = sigmoid(2): silu(2s) * 3s * [1, 2] (not s * silu(2) * 3)."""
    spec = MoESpec(2, 1, 2, 1, dtype=F64, router=RouterSpec("sigmoid", renormalize=False, weight_on="input"))
    w, x = _one_token_layer(spec)
    s = 1 / (1 + math.exp(-2))
    expected = silu(2 * s) * 3 * s * torch.tensor([[1.0, 2.0]], dtype=F64)
    torch.testing.assert_close(reference_moe(x, w), expected, rtol=1e-12, atol=0)
    output_weighted = reference_moe(x, MoEWeights(spec.replace(router=RouterSpec("sigmoid", False)), *w.parameters()))
    torch.testing.assert_close(output_weighted, s * silu(2) * 3 * torch.tensor([[1.0, 2.0]], dtype=F64))


def test_expert_biases_and_gated_shared_expert_by_hand():
    """Expert 0 with b1 = [1, -1] (gate, up) and b2 = [.5, 0]: (silu(2 + 1) * (3 - 1) * [1, 2] + b2) * w0, with
    w0 = softmax weight 1 (k=1, renormalised); plus a shared expert (gate row reads x1, up row x0, down [1, 1])
    times sigmoid(x . [0, 1]) = sigmoid(3)."""
    spec = MoESpec(2, 1, 2, 1, dtype=F64, expert=ExpertSpec(bias=True), shared=SharedSpec(1, 1, gated=True))
    b1 = torch.tensor([[1.0, -1.0], [0.0, 0.0]], dtype=F64)
    b2 = torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=F64)
    shared = dict(
        shared_w1=torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], dtype=F64),
        shared_w2=torch.tensor([[[1.0], [1.0]]], dtype=F64),
        shared_gate=torch.tensor([[0.0, 1.0]], dtype=F64),
    )
    w, x = _one_token_layer(spec, b1=b1, b2=b2, **shared)
    routed = silu(3) * 2 * torch.tensor([1.0, 2.0], dtype=F64) + b2[0]
    shared_out = 1 / (1 + math.exp(-3)) * silu(3) * 2 * torch.ones(2, dtype=F64)
    torch.testing.assert_close(reference_moe(x, w), (routed + shared_out)[None], rtol=1e-12, atol=0)


def test_reference_from_routing_takes_any_routing():
    spec = get_preset("tiny-shared", "fp32")
    w, x = random_weights(spec, seed=2), random_inputs(spec, 7, seed=3)
    drawn = Routing(torch.rand(7, 2), torch.randint(0, 6, (7, 2)))
    out = reference_from_routing(x, w, drawn)
    swapped = Routing(drawn.weights.flip(-1), drawn.ids.flip(-1))  # slot order does not matter
    torch.testing.assert_close(out, reference_from_routing(x, w, swapped), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out, reference_moe(x, w))


@pytest.mark.parametrize("preset", TINY_PRESETS)
@pytest.mark.parametrize("tokens", [0, 5])
def test_routing_is_graph_safe_on_meta_tensors(preset, tokens):
    """No host sync and no data-dependent shape: the whole routing path runs on meta tensors."""
    spec = get_preset(preset, "bf16")
    w = empty_weights(spec, "meta")
    routing = route(torch.empty(tokens, spec.hidden, device="meta", dtype=spec.dtype), w)
    assert routing.weights.shape == routing.ids.shape == (tokens, spec.top_k)
    assert routing.weights.dtype == torch.float32 and routing.ids.dtype == torch.int64
