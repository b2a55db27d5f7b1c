"""Drawn routings: seeded, k distinct experts per token, and the skew each kind states."""

from __future__ import annotations

import pytest
import torch

from moebench.ep import draw_routing, expert_loads, imbalance
from moebench.errors import MoEInputError


@pytest.mark.parametrize("kind", ["uniform", "zipf", "hot"])
def test_draws_are_seeded_routings(kind):
    weights, ids = draw_routing(300, 16, 4, kind, seed=7)
    again = draw_routing(300, 16, 4, kind, seed=7)
    assert torch.equal(weights, again[0]) and torch.equal(ids, again[1])
    assert not torch.equal(ids, draw_routing(300, 16, 4, kind, seed=8)[1])
    assert ids.shape == (300, 4) and ids.dtype == torch.int64 and weights.dtype == torch.float32
    assert int(ids.min()) >= 0 and int(ids.max()) < 16
    assert all(len(set(row)) == 4 for row in ids.tolist())  # k distinct experts
    assert torch.allclose(weights.sum(-1), torch.ones(300)) and bool((weights > 0).all())
    assert bool((weights[:, :-1] >= weights[:, 1:]).all())


def test_skew_grows_with_the_zipf_exponent():
    spread = [imbalance(expert_loads(draw_routing(4000, 32, 4, "zipf", zipf_s=s, seed=1)[1], 32)) for s in (0, 1, 2)]
    assert spread[0] < 1.2 < spread[1] < spread[2], spread
    uniform = imbalance(expert_loads(draw_routing(4000, 32, 4, "uniform", seed=1)[1], 32))
    assert uniform < 1.2


@pytest.mark.parametrize("tokens, experts, k, fraction", [(101, 8, 2, 0.6), (40, 4, 1, 1.0), (9, 3, 3, 1.0)])
def test_hot_expert_gets_exactly_its_fraction_of_tokens(tokens, experts, k, fraction):
    _, ids = draw_routing(tokens, experts, k, "hot", hot_fraction=fraction, seed=2)
    loads = expert_loads(ids, experts)
    assert int(loads.max()) == round(fraction * tokens)
    assert all(len(set(row)) == k for row in ids.tolist())


def test_edge_sizes_and_bad_input():
    weights, ids = draw_routing(0, 4, 2, "zipf")
    assert weights.shape == ids.shape == (0, 2)
    assert imbalance(expert_loads(ids, 4)) == 1.0
    for kwargs, argument in [
        ({"kind": "normal"}, "kind"),
        ({"top_k": 5}, "top_k"),
        ({"kind": "zipf", "zipf_s": -1.0}, "zipf_s"),
        ({"kind": "hot", "hot_fraction": 1.5}, "hot_fraction"),
    ]:
        with pytest.raises(MoEInputError, match=argument):
            draw_routing(10, 4, kwargs.pop("top_k", 2), **kwargs)
