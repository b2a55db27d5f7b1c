"""Property-style parity: seeded random problems, every implementation that runs here, the gate's check.

Each dtype draws CASES problems from the table below (E in [1, 64], k in [1, min(E, 8)], H and I
mostly not multiples of 16, T in [0, 400], every router option and activation), makes inputs, and
runs every runnable implementation on them against the fp64 reference (whole tensor, every row,
non-finite values; near ties accepted either way). Torch implementations run every case; the
exported runtimes every EXPORT_EVERY-th (each case exports and builds a session), Triton ones
every TRITON_EVERY-th (the interpreter is slow) on the test device (conftest: interpreter on CPU
tensors here, compiled kernels on CUDA tensors on a GPU machine).

The seed is fresh each run and printed in every failure; MOEBENCH_PROPERTY_SEED=<seed> replays it.

Adding a spec option (the realmodels options: router and selection biases, expert groups, softmax
after top-k, routed scaling, input-scaled routing, shared experts, clamped SwiGLU, biases) is adding
an entry to SPEC_DRAWS (a spec field and how to draw it) or ROUTER_DRAWS (a RouterSpec field); an
option with constraints (groups dividing E) draws from the values already drawn, which each draw
function receives. Options held by the weights rather than the spec (bias tensors) belong in
`draw_inputs`.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable

import pytest
import torch
from conftest import DEVICE

from moebench import registry
from moebench.parity import Case, CaseOutcome, check_on, expected_output
from moebench.spec import MoESpec, RouterSpec, dtype_name
from moebench.weights import random_inputs, random_weights

CASES = 200  # per dtype
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
EXPORT_EVERY = 10  # the exported runtimes (ONNX Runtime) run every 10th case
TRITON_EVERY = 20  # the Triton kernels (interpreter on the CPU) every 20th
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
ROUTER_DRAWS: dict[str, Draw] = {
    "scoring": lambda rng, d: rng.choice(("softmax", "sigmoid")),
    "renormalize": lambda rng, d: rng.random() < 0.5,
}


def draw_tokens(rng: random.Random) -> int:
    return rng.choice((0, 1)) if rng.random() < 0.1 else rng.randint(2, 400)


def draw_spec(rng: random.Random, dtype: torch.dtype) -> MoESpec:
    drawn: dict = {}
    for name, draw in SPEC_DRAWS.items():
        drawn[name] = draw(rng, drawn)
    router: dict = {}
    for name, draw in ROUTER_DRAWS.items():
        router[name] = draw(rng, {**drawn, **router})
    return MoESpec(**drawn, dtype=dtype, router=RouterSpec(**router))


def draw_inputs(spec: MoESpec, num_tokens: int, seed: int, device: str):
    return random_weights(spec, device=device, seed=seed), random_inputs(spec, num_tokens, device=device, seed=seed + 1)


def draw_cases(dtype: torch.dtype) -> list[tuple[MoESpec, int, int]]:
    """CASES (spec, T, input seed) for `dtype`, from SEED."""
    rng = random.Random(f"{SEED}-{dtype_name(dtype)}")
    return [(draw_spec(rng, dtype), draw_tokens(rng), rng.randrange(2**31)) for _ in range(CASES)]


def _share(info) -> int:
    if "triton" in info.requires:
        return TRITON_EVERY
    return EXPORT_EVERY if info.kind == "deployed" else 1


def _runnable() -> list[tuple[registry.ImplInfo, str]]:
    found = []
    for info in registry.all_impls():
        device = next((d for d in dict.fromkeys((DEVICE, "cpu")) if info.available(d)[0]), None)
        if device is not None:
            found.append((info, device))
    return found


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
def test_every_implementation_passes_random_problems(dtype):
    impls = [(info, device) for info, device in _runnable() if info.supports(dtype)]
    failures, runs = [], 0
    for i, (spec, num_tokens, seed) in enumerate(draw_cases(dtype)):
        inputs: dict[str, tuple] = {}
        for info, device in impls:
            if i % _share(info) or info.spec_unsupported(spec):
                continue
            if device not in inputs:
                weights, x = draw_inputs(spec, num_tokens, seed, device)
                inputs[device] = (x, weights, expected_output(x, weights))
            x, weights, expected = inputs[device]
            outcome = check_on(
                info, x, weights, CaseOutcome(info.name, spec, Case("random", num_tokens), seed), expected
            )
            runs += 1
            if not outcome.ok:
                failures.append(
                    f"case {i} ({spec.describe()}, T={num_tokens}, seed {seed}) {info.name}: "
                    f"{outcome.error or outcome.result}"
                )
    replay = f"MOEBENCH_PROPERTY_SEED={SEED}"
    assert not failures, f"{len(failures)} failure(s) in {runs} runs; replay with {replay}:\n" + "\n".join(
        failures[:20]
    )
    assert runs >= CASES, f"{runs} runs ({replay})"
