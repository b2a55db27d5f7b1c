"""Property-style parity: seeded random problems, every implementation that runs here, the gate's check.

Each dtype draws CASES problems from the table below (E in [1, 64], k in [1, min(E, 8)], H and I
mostly not multiples of 16, T in [0, 400], every router option and activation), makes inputs, and
runs every runnable implementation on them against the fp64 reference (whole tensor, every row,
non-finite values; near ties accepted either way). Implementations run on the test device
(tests/runnable_impls.py). What each runs, so that the test fits CI (2 cores, about a minute; CPU
seconds per case measured on this machine's CPU, fp32/bf16):
  - the torch implementations (naive_loop 27-29 ms, padded_batch 5-10, padded_batch_capacity 15-18,
    grouped_mm 5-8; the reference 14): every case;
  - hf_experts (about 2 s with the drawn options: builds a transformers module per call): every
    EVERY_HF-th case; the exported runtimes (ONNX Runtime: 30-75 ms, export and session per case): every
    EVERY-th case;
  - the Triton kernels (the interpreter on the CPU takes 0.1 s to 30 s a case, growing with the
    active experts times the H and I tiles): the first TRITON_CASES cases whose interpreter work
    (`interpreter_work`) is at most TRITON_MAX_WORK, the same share on a GPU machine.

The seed is fresh each run and printed in every failure; MOEBENCH_PROPERTY_SEED=<seed> replays it
(.ci/run sets one, so that CI's verdict depends on the tree alone).

Every layer option is drawn (router and selection biases, expert groups, softmax after top-k, routed
scaling, input-scaled routing, clamped SwiGLU, expert biases, shared experts gated or not): adding one
is adding an entry to SPEC_DRAWS (a spec field and how to draw it) or ROUTER_DRAWS / EXPERT_DRAWS /
SHARED_DRAWS (a field of RouterSpec / ExpertSpec / SharedSpec); an option with constraints (groups
dividing E) draws from the values already drawn, which each draw function receives. An implementation
runs only the cases its registry entry accepts (`spec_unsupported`).
"""

from __future__ import annotations

import os
import random
import secrets
from collections import Counter
from collections.abc import Callable

import pytest
import torch
from runnable_impls import runnable_impls

from moebench import registry
from moebench.parity import Case, CaseOutcome, check_on, expected_output
from moebench.spec import ExpertSpec, MoESpec, RouterSpec, SharedSpec, dtype_name
from moebench.weights import random_inputs, random_weights

CASES = 200  # per dtype
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
EVERY = 20  # the exported runtimes run every 20th case
EVERY_HF = 50  # hf_experts every 50th (it builds a transformers module per call: about 2 CPU s a case here)
TRITON_CASES = 1  # per dtype and Triton implementation
TRITON_MAX_WORK = 64  # interpreter_work of a case a Triton implementation runs (64: about 1 CPU second)
TORCH_BASELINE = "naive_loop"  # runs every case on every machine
SEED = int(os.environ.get("MOEBENCH_PROPERTY_SEED") or secrets.randbelow(2**31))

Draw = Callable[[random.Random, dict], object]  # (rng, the values drawn so far) -> this field's value


def _size(rng: random.Random, drawn: dict) -> int:
    """H or I: mostly 1..96 (rarely a multiple of 16), sometimes a multiple of 16 up to 128."""
    return rng.choice((16, 32, 64, 128)) if rng.random() < 0.15 else rng.randint(1, 96)


# MoESpec fields, drawn in this order (later draws see earlier values)
SPEC_DRAWS: dict[str, Draw] = {
    "num_experts": lambda rng, d: rng.randint(1, 64),
    "top_k": lambda rng, d: rng.randint(1, min(d["num_experts"], 8)),
    "hidden": _size,
    "intermediate": _size,
    "activation": lambda rng, d: rng.choice(("swiglu", "gelu", "relu")),
}


# RouterSpec fields
def _groups(rng: random.Random, d: dict) -> int:
    """Expert groups (DeepSeek-V3's group-limited routing), a divisor of E leaving >= 2 experts a group."""
    divisors = [g for g in range(2, d["num_experts"] // 2 + 1) if d["num_experts"] % g == 0]
    return rng.choice(divisors) if divisors and rng.random() < 0.25 else 1


def _topk_groups(rng: random.Random, d: dict) -> int:
    """Groups a token may pick from: enough of them to hold k experts, fewer than all when possible."""
    groups, per_group = d["groups"], d["num_experts"] // d["groups"]
    least = -(-d["top_k"] // per_group)
    return groups if groups == 1 else rng.randint(least, max(least, groups - 1))


ROUTER_DRAWS: dict[str, Draw] = {
    "scoring": lambda rng, d: rng.choice(("softmax", "sigmoid")),
    "softmax_after_topk": lambda rng, d: d["scoring"] == "softmax" and rng.random() < 0.2,
    "renormalize": lambda rng, d: not d["softmax_after_topk"] and rng.random() < 0.5,
    "bias": lambda rng, d: rng.random() < 0.25,
    "selection_bias": lambda rng, d: rng.random() < 0.25,
    "groups": _groups,
    "topk_groups": _topk_groups,
    "scaling": lambda rng, d: 2.5 if rng.random() < 0.2 else 1.0,
    "weight_on": lambda rng, d: "input" if rng.random() < 0.15 else "output",
}
# ExpertSpec fields: gpt-oss's clamped SwiGLU (swiglu only) and expert biases
EXPERT_DRAWS: dict[str, Draw] = {
    "swiglu_limit": lambda rng, d: 7.0 if d["activation"] == "swiglu" and rng.random() < 0.25 else None,
    "swiglu_alpha": lambda rng, d: 1.702 if d["swiglu_limit"] is not None else 1.0,
    "swiglu_up_offset": lambda rng, d: 1.0 if d["swiglu_limit"] is not None else 0.0,
    "bias": lambda rng, d: rng.random() < 0.25,
}
# SharedSpec fields: always-on experts, gated per token or not
SHARED_DRAWS: dict[str, Draw] = {
    "count": lambda rng, d: rng.choice((1, 2)) if rng.random() < 0.2 else 0,
    "intermediate": lambda rng, d: (d["intermediate"] if rng.random() < 0.5 else _size(rng, d)) if d["count"] else 0,
    "gated": lambda rng, d: bool(d["count"]) and rng.random() < 0.5,
}


def draw_tokens(rng: random.Random) -> int:
    return rng.choice((0, 1)) if rng.random() < 0.1 else rng.randint(2, 400)


def draw_spec(rng: random.Random, dtype: torch.dtype) -> MoESpec:
    drawn: dict = {}
    for name, draw in SPEC_DRAWS.items():
        drawn[name] = draw(rng, drawn)
    options = {}
    for field, kind, draws in (("router", RouterSpec, ROUTER_DRAWS), ("expert", ExpertSpec, EXPERT_DRAWS),
                               ("shared", SharedSpec, SHARED_DRAWS)):  # fmt: skip
        values: dict = {}
        for name, draw in draws.items():
            values[name] = draw(rng, {**drawn, **values})
        options[field] = kind(**values)
    return MoESpec(**drawn, dtype=dtype, **options)


def draw_inputs(spec: MoESpec, num_tokens: int, seed: int, device: str):
    return random_weights(spec, device=device, seed=seed), random_inputs(spec, num_tokens, device=device, seed=seed + 1)


def draw_cases(dtype: torch.dtype) -> list[tuple[MoESpec, int, int]]:
    """CASES (spec, T, input seed) for `dtype`, from SEED."""
    rng = random.Random(f"{SEED}-{dtype_name(dtype)}")
    return [(draw_spec(rng, dtype), draw_tokens(rng), rng.randrange(2**31)) for _ in range(CASES)]


def interpreter_work(spec: MoESpec, num_tokens: int) -> int:
    """What the Triton interpreter's time grows with: active experts x 32-wide tiles of H x of I."""
    active = min(spec.num_experts, num_tokens * spec.top_k)
    return active * -(-spec.hidden // 32) * -(-spec.intermediate // 32)


def cases_of(info: registry.ImplInfo, cases: list[tuple[MoESpec, int, int]]) -> set[int]:
    """The indices of the cases `info` runs (see the module docstring), among those its spec supports."""
    fits = [i for i, (spec, _, _) in enumerate(cases) if not info.spec_unsupported(spec)]
    if "triton" in info.requires:
        return set([i for i in fits if interpreter_work(*cases[i][:2]) <= TRITON_MAX_WORK][:TRITON_CASES])
    every = EVERY_HF if "transformers" in info.requires else EVERY if info.kind == "deployed" else 1
    return set(fits[::every])  # every n-th of the cases it supports (never none while some fit)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
def test_every_implementation_passes_random_problems(dtype, triton_device):
    # triton_device: the Triton implementations run there (runnable_impls' device for them)
    cases = draw_cases(dtype)
    impls = [(info, device, cases_of(info, cases)) for info, device in runnable_impls() if info.supports(dtype)]
    failures, runs = [], Counter()
    for i, (spec, num_tokens, seed) in enumerate(cases):
        inputs: dict[str, tuple] = {}
        for info, device, chosen in impls:
            if i not in chosen:
                continue
            if device not in inputs:
                weights, x = draw_inputs(spec, num_tokens, seed, device)
                inputs[device] = (x, weights, expected_output(x, weights))
            x, weights, expected = inputs[device]
            outcome = check_on(
                info, x, weights, CaseOutcome(info.name, spec, Case("random", num_tokens), seed), expected
            )
            runs[info.name] += 1
            if not outcome.ok:
                failures.append(
                    f"case {i} ({spec.describe()}, T={num_tokens}, seed {seed}) {info.name}: "
                    f"{outcome.error or outcome.result}"
                )
    replay = f"MOEBENCH_PROPERTY_SEED={SEED}"
    total = sum(runs.values())
    assert not failures, f"{len(failures)} failure(s) in {total} runs; replay with {replay}:\n" + "\n".join(
        failures[:20]
    )
    assert runs[TORCH_BASELINE] == CASES, f"{runs} ({replay})"
    missing = [info.name for info, _, chosen in impls if not chosen]
    assert not missing, f"no case for {missing} among {CASES} draws ({replay})"
