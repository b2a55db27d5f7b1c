"""Placements: layouts, bad input, the replica choice and redundant copies (single process)."""

from __future__ import annotations

import pytest
import torch

from moebench.ep import Placement, draw_routing, expert_loads, pair_matrix
from moebench.errors import MoEInputError


def test_layouts():
    assert Placement.contiguous(7, 3).rank_experts == ((0, 1, 2), (3, 4), (5, 6))
    assert Placement.round_robin(7, 3).rank_experts == ((0, 3, 6), (1, 4), (2, 5))
    assert Placement.from_owner([1, 0, 1]).rank_experts == ((1,), (0, 2))
    assert not Placement.contiguous(4, 2).has_replicas
    assert Placement.contiguous(4, 2).with_replicas([(3, 0)]).rank_experts == ((0, 1, 3), (2, 3))


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: Placement.contiguous(2, 3), "num_ranks"),
        (lambda: Placement.from_owner([0, 0], 2), "rank_experts"),  # rank 1 holds nothing
        (lambda: Placement.from_owner([0, 2], 2), "owner"),
        (lambda: Placement(3, ((0,), (1,))), "rank_experts"),  # expert 2 held by no rank
        (lambda: Placement(2, ((0, 0), (1,))), "rank_experts"),
        (lambda: Placement.contiguous(4, 2).with_replicas([(0, 5)]), "replicas"),
        (lambda: Placement.contiguous(4, 2).with_redundant([1, 2], 1), "loads"),
    ],
)
def test_bad_input_names_the_argument(make, argument):
    with pytest.raises(MoEInputError, match=argument):
        make()


def test_assign_without_replicas_maps_to_owner_and_local_id():
    placement = Placement.round_robin(5, 2)  # rank 0: 0, 2, 4; rank 1: 1, 3
    rank, local = placement.assign(torch.tensor([[4, 1], [3, 0]]))
    assert rank.tolist() == [0, 1, 1, 0]
    assert local.tolist() == [2, 0, 1, 0]


def test_replicas_split_each_expert_evenly_and_chunks_agree():
    """Pair j of a replicated expert (global token order) goes to copy j mod copies; ranks that see
    only their own tokens and the lower ranks' counts (`before`) choose as one process would."""
    placement = Placement.contiguous(6, 3).with_replicas([(0, 1), (0, 2), (5, 0)])
    _, topk_ids = draw_routing(50, 6, 2, "hot", hot_fraction=0.8, seed=3)
    rank, local = placement.assign(topk_ids)
    slots = torch.zeros(3, 4, dtype=torch.int64).index_put_((rank, local), torch.ones_like(rank), accumulate=True)
    for e in (0, 5):
        counts = [int(slots[r, placement.rank_experts[r].index(e)]) for r in range(3) if e in placement.rank_experts[r]]
        assert max(counts) - min(counts) <= 1 and sum(counts) == int((topk_ids == e).sum()), (e, counts)
    before = torch.zeros(6, dtype=torch.int64)
    chunks = []
    for part in (topk_ids[:0], topk_ids[:17], topk_ids[17:20], topk_ids[20:]):
        chunks.append(torch.stack(placement.assign(part, before)))
        before += expert_loads(part, 6)
    assert torch.equal(torch.cat(chunks, dim=1), torch.stack((rank, local)))


def test_redundant_copies_spread_a_hot_expert():
    # every token on expert 0 (k=1): rank 0 computes all 8 pairs without copies, 4 of 8 with one
    placement = Placement.contiguous(4, 2)
    topk_ids = torch.zeros(8, 1, dtype=torch.int64)
    loads = expert_loads(topk_ids, 4)
    assert pair_matrix(topk_ids, [4, 4], placement).sum(0).tolist() == [8, 0]
    spread = placement.with_redundant(loads, 1)
    assert spread.rank_experts == ((0, 1), (2, 3, 0))
    assert pair_matrix(topk_ids, [4, 4], spread).sum(0).tolist() == [4, 4]
    # an even routing gains nothing from copies: none is added
    assert placement.with_redundant([5, 5, 5, 5], 2) == placement
