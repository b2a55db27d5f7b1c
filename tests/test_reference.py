"""The fp64 reference against an independent dense formulation, and routing semantics."""

import pytest
import torch

from moebench.activations import apply_activation
from moebench.presets import TINY_PRESETS, get_preset
from moebench.reference import reference_moe
from moebench.routing import route, sort_by_expert
from moebench.weights import random_inputs, random_weights


def dense_moe(x, weights):
    """Every expert on every token, combined with a dense [T, E] gate matrix (no indexing)."""
    spec = weights.spec
    x64 = x.double()
    router, w1, w2 = (p.double() for p in weights.parameters())
    logits = x64 @ router.t()
    scores = logits.softmax(-1) if spec.router.scoring == "softmax" else logits.sigmoid()
    top, ids = scores.topk(spec.top_k, dim=-1)
    if spec.router.renormalize:
        top = top / top.sum(-1, keepdim=True)
    gates = torch.zeros_like(scores).scatter(1, ids, top)  # [T, E]
    h = apply_activation(spec, torch.einsum("th,eih->eti", x64, w1))  # [E, T, I]
    y = torch.einsum("eti,ehi->eth", h, w2)  # [E, T, H]
    return torch.einsum("te,eth->th", gates, y)


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
    weights, ids = route(x, w.router, spec)
    torch.testing.assert_close(weights.sum(-1), torch.ones(9))
    assert ids.dtype == torch.int64 and ids.shape == (9, 2)
    assert bool((ids[:, 0] != ids[:, 1]).all()), "distinct experts per token"
    plain = get_preset("tiny-odd", "fp32")
    w2 = random_weights(plain)
    weights2, _ = route(random_inputs(plain, 9), w2.router, plain)
    assert bool((weights2.sum(-1) < 1).all()), "softmax without renorm keeps a mass < 1"


def test_sort_by_expert_groups_every_pair_once():
    ids = torch.tensor([[2, 0], [2, 1], [0, 2]])
    order, counts, offsets = sort_by_expert(ids, 4)
    assert counts.tolist() == [2, 1, 3, 0]
    assert offsets.tolist() == [0, 2, 3, 6, 6]
    assert sorted(order.tolist()) == list(range(6))
    assert ids.reshape(-1)[order].tolist() == [0, 0, 1, 2, 2, 2]
