"""The fp64 reference against an independent dense formulation, and routing semantics."""

import pytest
import torch

from moebench.activations import apply_activation
from moebench.presets import TINY_PRESETS, get_preset
from moebench.reference import reference_moe
from moebench.routing import route, sort_by_expert
from moebench.weights import random_inputs, random_weights


def dense_routing(x64, weights):
    """[T, E] gate matrix of every option, written independently of moebench.routing (argsort ranks)."""
    spec, r = weights.spec, weights.spec.router
    logits = x64 @ weights.router.double().t()
    if weights.router_bias is not None:
        logits = logits + weights.router_bias.double()
    if r.softmax_after_topk:
        scores = logits
    else:
        scores = logits.softmax(-1) if r.scoring == "softmax" else logits.sigmoid()
    choice = scores + (0 if weights.selection_bias is None else weights.selection_bias.double())
    if r.group_limited:
        grouped = choice.view(len(x64), r.groups, -1)
        group_score = grouped.sort(-1, descending=True).values[..., :2].sum(-1)  # [T, G]
        rank = group_score.argsort(-1, descending=True).argsort(-1)  # 0 = best group
        allowed = (rank < r.topk_groups)[..., None].expand_as(grouped).reshape(choice.shape)
        choice = torch.where(allowed, choice, torch.tensor(-1e300, dtype=torch.float64))
    chosen = choice.argsort(-1, descending=True).argsort(-1) < spec.top_k  # [T, E] bool
    gates = torch.where(chosen, scores, 0.0)
    if r.softmax_after_topk:
        gates = torch.where(chosen, (scores - scores.amax(-1, keepdim=True)).exp(), 0.0)
        gates = gates / gates.sum(-1, keepdim=True)
    elif r.renormalize:
        gates = gates / gates.sum(-1, keepdim=True)
    return gates * r.scaling


def dense_ffn(spec, x, w1, w2, b1, b2):
    """x [..., T, H] through experts [E, ...] all at once -> [E, T, H]."""
    h1 = torch.einsum("...th,eih->eti", x, w1) + (0 if b1 is None else b1[:, None, :])
    y = torch.einsum("eti,ehi->eth", apply_activation(spec, h1), w2)
    return y + (0 if b2 is None else b2[:, None, :])


def dense_moe(x, weights):
    """Every expert on every token, combined with a dense [T, E] gate matrix (no indexing)."""
    spec = weights.spec
    x64 = x.double()
    f64 = {name: t.double() for name, t in weights.tensors().items()}
    gates = dense_routing(x64, weights)  # [T, E]
    expert = (f64["w1"], f64["w2"], f64.get("b1"), f64.get("b2"))
    if spec.router.weight_on == "input":  # expert e sees g_te * x_t; unchosen pairs (g = 0) must add nothing
        y = dense_ffn(spec, gates.t()[:, :, None] * x64, *expert)
        out = torch.einsum("te,eth->th", (gates > 0).double(), y)
    else:
        out = torch.einsum("te,eth->th", gates, dense_ffn(spec, x64, *expert))
    if spec.shared.count:
        y = dense_ffn(spec, x64, f64["shared_w1"], f64["shared_w2"], None, None)  # [S, T, H]
        if spec.shared.gated:
            y = y * torch.sigmoid(x64 @ f64["shared_gate"].t()).t()[:, :, None]
        out = out + y.sum(0)
    return out


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_reference_matches_dense_formulation(preset):
    spec = get_preset(preset, "fp32")
    w = random_weights(spec, seed=11)
    x = random_inputs(spec, 23, seed=12)
    ref = reference_moe(x, w)
    assert ref.dtype == torch.float64
    torch.testing.assert_close(ref, dense_moe(x, w), rtol=1e-12, atol=1e-12)


def test_reference_keep_mask_drops_exactly_those_pairs():
    spec = get_preset("tiny", "fp32")
    w, x = random_weights(spec), random_inputs(spec, 6)
    keep = torch.ones(6, spec.top_k, dtype=torch.bool)
    keep[2, 1] = False
    full, dropped = reference_moe(x, w), reference_moe(x, w, keep=keep)
    assert torch.equal(full[[0, 1, 3, 4, 5]], dropped[[0, 1, 3, 4, 5]])
    assert not torch.allclose(full[2], dropped[2])


def test_route_renormalisation_and_sigmoid():
    spec = get_preset("tiny", "fp32")
    w, x = random_weights(spec), random_inputs(spec, 9)
    weights, ids = route(x, w)
    torch.testing.assert_close(weights.sum(-1), torch.ones(9))
    assert ids.dtype == torch.int64 and ids.shape == (9, 2)
    assert bool((ids[:, 0] != ids[:, 1]).all()), "distinct experts per token"
    plain = get_preset("tiny-odd", "fp32")
    w2 = random_weights(plain)
    weights2, _ = route(random_inputs(plain, 9), w2)
    assert bool((weights2.sum(-1) < 1).all()), "softmax without renorm keeps a mass < 1"


def test_sort_by_expert_groups_every_pair_once():
    ids = torch.tensor([[2, 0], [2, 1], [0, 2]])
    order, counts, offsets = sort_by_expert(ids, 4)
    assert counts.tolist() == [2, 1, 3, 0]
    assert offsets.tolist() == [0, 2, 3, 6, 6]
    assert sorted(order.tolist()) == list(range(6))
    assert ids.reshape(-1)[order].tolist() == [0, 0, 1, 2, 2, 2]
