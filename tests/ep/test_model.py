"""The traffic MODEL on routings small enough to count by hand."""

from __future__ import annotations

import pytest
import torch

from moebench.ep import Links, Placement, traffic_model
from moebench.errors import MoEInputError


def test_bytes_and_time_counted_by_hand():
    # 4 ranks, 2 per node, one expert each; k=2, H=10 in bf16: a dispatch pair is 20 + 4 + 4 bytes
    placement = Placement.contiguous(4, 4)
    topk_ids = torch.tensor([[0, 1], [2, 1], [3, 0]])  # token 0 on rank 0, token 1 on rank 1, token 2 on rank 3
    links = Links(intra_gbps=100.0, inter_gbps=10.0, gpus_per_node=2)
    model = traffic_model(topk_ids, [1, 1, 0, 1], placement, 10, torch.bfloat16, links)
    assert model.pairs.tolist() == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]]
    b = model.bytes()
    assert b["dispatch_sent"] == [28, 28, 0, 28]  # own-rank pairs are not traffic
    assert b["dispatch_received"] == [28, 28, 28, 0]
    assert b["dispatch_inter_sent"] == [0, 28, 0, 28]  # rank 1 -> rank 2 and rank 3 -> rank 0 cross nodes
    assert b["combine_sent"] == [20, 20, 20, 0]
    assert b["combine_received"] == [20, 20, 0, 20]
    assert model.dedup_rows == [1, 1, 0, 1]
    t = model.seconds()
    assert t["dispatch"] == pytest.approx([28 / 10e9] * 4)  # each rank has one cross-node transfer
    assert t["combine"] == pytest.approx([20 / 10e9] * 4)
    one_node = traffic_model(topk_ids, [1, 1, 0, 1], placement, 10, torch.bfloat16, Links(100.0, 10.0, 4))
    assert one_node.seconds()["dispatch"] == pytest.approx([28 / 100e9] * 4)
    summary = model.summary()
    assert summary["source"].startswith("MODEL")
    assert summary["all_to_all_s"] == pytest.approx(28 / 10e9 + 20 / 10e9)
    assert summary["inter_node_fraction"] == pytest.approx(2 / 3)
    assert summary["imbalance"] == pytest.approx(2 / 1.5)


def test_one_row_per_destination_rank_with_dedup():
    # both experts of every token on rank 1: two pairs, one deduplicated row per token
    model = traffic_model(torch.tensor([[2, 3], [3, 2]]), [2, 0], Placement.contiguous(4, 2), 8, torch.float32)
    assert model.pairs.tolist() == [[0, 4], [0, 0]]
    assert model.dedup_rows == [2, 0]
    assert model.bytes()["dispatch_sent"] == [4 * (32 + 8), 0]


def test_empty_routing_and_bad_token_counts():
    model = traffic_model(torch.zeros(0, 2, dtype=torch.int64), [0, 0], Placement.contiguous(2, 2), 8, torch.float16)
    assert model.summary()["all_to_all_s"] == 0.0 and model.summary()["imbalance"] == 1.0
    with pytest.raises(MoEInputError, match="tokens_per_rank"):
        traffic_model(torch.zeros(3, 1, dtype=torch.int64), [1, 1], Placement.contiguous(2, 2), 8, torch.float16)
