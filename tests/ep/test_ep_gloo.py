"""The expert-parallel layer on 2 and 4 CPU processes (gloo) equals the single-process fp64 reference
on the concatenated tokens, and the bytes the ranks moved are the traffic model's, exactly.

The local compute is the fp64 reference math for the layout cases, and every implementation of the
registry that runs here (Triton ones on the triton_device: the interpreter on a CPU machine) for the edge
cases. One spawned group per world size runs all its cases (spawning costs seconds; the cases
milliseconds). Seeds are fresh each run and printed on failure.
"""

from __future__ import annotations

import dataclasses
import math
import secrets

import pytest
import torch
from ep_cases import EPCase, input_errors, placement_of, problem, reference, run_cases

from moebench import registry
from moebench.ep import local_unsupported, summarize, traffic_model
from moebench.ep.launch import run_ranks
from moebench.parity import compare
from moebench.presets import get_preset

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
        EPCase("two gated shared experts (Qwen2-MoE style)", "tiny-shared", "fp32", (5, 4), seed=seed + 70),
        EPCase("input-weighted + shared (Llama-4 style) bf16", "tiny-input-scaled", "bf16", (3, 6), seed=seed + 80),
        EPCase("groups + shared (DeepSeek style), zipf", "tiny-groups", "fp32", (7, 2), draw="zipf", seed=seed + 90),
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
        EPCase("input-weighted + shared, T=0 on rank 1", "tiny-input-scaled", "fp32", (2, 0, 5, 3), seed=seed + 50),
    ]


def implementations(triton_device: str) -> list[tuple[str, str]]:
    """(name, device) of every registry implementation that takes a precomputed routing and runs here:
    torch ones on the CPU, Triton ones on the triton device. Left out: those that drop tokens by design
    (padded_batch_capacity) and those that compute their own routing (exported runtimes)."""
    chosen = []
    for info in registry.all_impls():
        device = triton_device if "triton" in info.requires else "cpu"
        if local_unsupported(info, get_preset("tiny", "fp32")) is None and info.available(device)[0]:
            chosen.append((info.name, device))
    return chosen


def _edge_cases(world: int, impls: list[tuple[str, str]], seed: int) -> list[EPCase]:
    """Per implementation: uneven tokens with T=0 on one rank and experts no token picks; all tokens on
    one rank's experts (the other ranks compute no pair); shared experts (gated; with input-weighted
    routing), which run through the implementation too; expert biases and the clamped SwiGLU (gpt-oss)."""
    if world == 2:
        shapes = [
            ("tiny-odd", (0, 7), "owner", (1, 0, 0, 1, 0), (), (3,)),
            ("tiny", (6, 3), "contiguous", (), (0, 1), ()),
            ("tiny-shared", (4, 5), "round_robin", (), (), ()),
            ("tiny-oss", (3, 4), "contiguous", (), (), ()),
        ]
    else:
        shapes = [
            ("tiny-many", (1, 6, 0, 3), "round_robin", (), (), (12, 13, 14, 15)),
            ("tiny-many", (2, 3, 4, 1), "contiguous", (), (8, 9, 10, 11), ()),
            ("tiny-input-scaled", (3, 0, 2, 4), "contiguous", (), (), ()),
        ]
    return [
        EPCase(
            f"{name} on {device}, {preset} T={tokens}",
            preset,
            "fp32",
            tokens,
            layout,
            owner,
            always=always,
            never=never,
            impl=name,
            device=device,
            seed=seed + 100 + i,
        )  # fmt: skip
        for name, device in impls
        for i, (preset, tokens, layout, owner, always, never) in enumerate(shapes)
    ]


def _check(case: EPCase, ranks: list) -> None:
    weights, x, drawn = problem(case)
    y = torch.cat([r[0] for r in ranks])
    topk_ids = torch.cat([r[1] for r in ranks])
    stats = [r[2] for r in ranks]
    where = f"{case.name} (seed {case.seed})"
    result = compare(y, reference(case)[1], case.spec.dtype)
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
def test_ep_layer_equals_reference_and_model(world, cases, triton_device):
    seed = secrets.randbelow(2**20)
    impls = implementations(triton_device)
    assert {"naive_loop", "grouped_mm"} <= {name for name, _ in impls}, impls
    chosen = cases(seed) + _edge_cases(world, impls, seed)
    outputs = run_ranks(run_cases, world, (chosen,), timeout_s=TIMEOUT_S)
    for i, case in enumerate(chosen):
        _check(case, [outputs[rank][i] for rank in range(world)])


def test_bad_input_names_the_argument():
    messages = run_ranks(input_errors, 1, timeout_s=TIMEOUT_S)[0]
    for message, argument in zip(messages, ["topk_ids", "topk_weights", "placement", "layer", "local_compute"]):
        assert argument in message, (argument, message)
