"""The expert-parallel layer on 2 and 4 CPU processes (gloo) equals the single-process fp64 reference
on the concatenated tokens, and the bytes the ranks moved are the traffic model's, exactly.

One spawned group per world size runs all its cases (spawning costs seconds; the cases milliseconds).
Seeds are fresh each run and printed on failure.
"""

from __future__ import annotations

import dataclasses
import math
import secrets

import pytest
import torch
from ep_cases import EPCase, input_errors, placement_of, problem, run_cases

from moebench.ep import routed_reference, summarize, traffic_model
from moebench.ep.launch import run_ranks
from moebench.parity import compare
from moebench.reference import reference_moe

TIMEOUT_S = 240.0


def _cases_2(seed: int) -> list[EPCase]:
    return [
        EPCase("uneven tokens", "tiny", "fp32", (5, 9), seed=seed),
        EPCase("uneven tokens bf16, round robin", "tiny", "bf16", (9, 4), "round_robin", seed=seed + 10),
        EPCase("T=0 on rank 0", "tiny", "fp32", (0, 7), seed=seed + 20),
        EPCase("T=0 on every rank", "tiny", "fp32", (0, 0), seed=seed + 30),
        EPCase("all pairs on rank 0's experts", "tiny", "fp32", (6, 3), always=(0, 1), seed=seed + 40),
        EPCase("empty expert, owner map", "tiny-odd", "fp32", (4, 5), "owner", (1, 0, 0, 1, 0), never=(3,), seed=seed),
        EPCase("k=E, T=1 on rank 0", "tiny-k-eq-e", "bf16", (1, 6), seed=seed + 50),
        EPCase("hot expert, redundant copies", "tiny", "fp32", (10, 11), extra_per_rank=1, draw="hot", seed=seed),
        EPCase("broken control", "tiny", "fp32", (5, 5), broken=True, seed=seed + 60),
    ]


def _cases_4(seed: int) -> list[EPCase]:
    return [
        EPCase("uneven tokens", "tiny-many", "fp32", (1, 7, 0, 3), seed=seed),
        EPCase("uneven tokens bf16, round robin", "tiny-many", "bf16", (3, 0, 8, 2), "round_robin", seed=seed + 10),
        EPCase("all pairs on rank 2's experts", "tiny-many", "fp32", (2, 3, 4, 1), always=(8, 9, 10, 11), seed=seed),
        EPCase(
            "empty experts, owner map",
            "tiny-many",
            "fp32",
            (2, 2, 2, 2),
            "owner",
            (3, 2, 1, 0) * 4,
            never=(12, 13, 14, 15),
            seed=seed + 20,
        ),
        EPCase("zipf, redundant copies", "tiny-many", "fp32", (6, 6, 6, 6), extra_per_rank=1, draw="zipf", seed=seed),
        EPCase(
            "hot bf16, redundant copies", "tiny-many", "bf16", (5, 7, 6, 4), extra_per_rank=2, draw="hot", seed=seed
        ),
        EPCase("T=0 on every rank", "tiny-many", "bf16", (0, 0, 0, 0), seed=seed + 30),
        EPCase("broken control", "tiny-many", "fp32", (4, 4, 4, 4), broken=True, seed=seed + 40),
    ]


def _check(case: EPCase, ranks: list) -> None:
    weights, x, drawn = problem(case)
    y = torch.cat([r[0] for r in ranks])
    topk_ids = torch.cat([r[1] for r in ranks])
    stats = [r[2] for r in ranks]
    where = f"{case.name} (seed {case.seed})"
    ref = reference_moe(x, weights) if drawn is None else routed_reference(x, weights, *drawn)
    result = compare(y, ref, case.spec.dtype)
    assert result.ok != case.broken, f"{where}: {result}"

    placement = placement_of(case, drawn)
    model = traffic_model(topk_ids, list(case.tokens), placement, case.spec.hidden, case.spec.dtype)
    modelled = model.bytes()
    for rank, s in enumerate(stats):
        assert s.send_pairs == model.pairs[rank].tolist(), where
        assert s.recv_pairs == model.pairs[:, rank].tolist(), where
        for key, value in s.link_bytes().items():
            assert value == modelled[key][rank], f"{where}: rank {rank} {key}"
        assert set(s.seconds) == {"dispatch", "compute", "combine"}, where
        assert all(math.isfinite(t) and t >= 0 for t in s.seconds.values()), where
    assert sum(s.pairs_computed for s in stats) == x.shape[0] * case.spec.top_k, where
    if case.always:
        owners = {r for r, held in enumerate(placement.rank_experts) if set(case.always) <= set(held)}
        assert all(s.pairs_computed == 0 for r, s in enumerate(stats) if r not in owners), where
    if case.extra_per_rank:  # the copies spread the skewed load: no more imbalance than without them
        single = placement_of(dataclasses.replace(case, extra_per_rank=0), drawn)
        plain = traffic_model(topk_ids, list(case.tokens), single, case.spec.hidden, case.spec.dtype)
        assert summarize(stats)["imbalance"] <= plain.summary()["imbalance"], where
        assert placement.has_replicas, where


@pytest.mark.parametrize("world, cases", [(2, _cases_2), (4, _cases_4)], ids=["2 ranks", "4 ranks"])
def test_ep_layer_equals_reference_and_model(world, cases):
    chosen = cases(secrets.randbelow(2**20))
    outputs = run_ranks(run_cases, world, (chosen,), timeout_s=TIMEOUT_S)
    for i, case in enumerate(chosen):
        _check(case, [outputs[rank][i] for rank in range(world)])


def test_bad_input_names_the_argument():
    messages = run_ranks(input_errors, 1, timeout_s=TIMEOUT_S)[0]
    for message, argument in zip(messages, ["topk_ids", "topk_weights", "placement", "local_weights", "local_compute"]):
        assert argument in message, (argument, message)
