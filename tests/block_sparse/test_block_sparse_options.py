"""block_sparse with the layer options of issue 16 (shared experts, group-limited biased routing, gpt-oss
experts with biases and the clamped SwiGLU, the router weight on the expert's input): forward against the
fp64 reference in fp32 and fp16 at T = 0, 1, 7 and 333, and every gradient (x, router, w1, w2 and each
option's own tensors: biases, shared experts, shared gate) against the reference's autograd.

Tiny presets, fixed seeds; T = 333 runs in one of the two dtypes per preset (alternating) to keep the
interpreter time down. bf16 is covered by the plain presets' tests (the options' epilogues run in fp32).
"""

import dataclasses
import functools

import pytest
import torch

from moebench import registry
from moebench.gradparity import run_grad_case
from moebench.parity import Case, make_case_inputs, poison_allocator, run_case
from moebench.presets import get_preset
from moebench.routing import route

pytest.importorskip("triton")

IMPL = registry.get("block_sparse")
SEED = 1617  # fixed inputs: these tests must not depend on luck; `moebench verify --grad` draws fresh ones
OPTION_PRESETS = ("tiny-shared", "tiny-groups", "tiny-oss", "tiny-input-scaled")
# the option tensors whose gradients each preset has, beyond x, router, w1 and w2
OPTION_GRADS = {
    "tiny-shared": {"shared_w1", "shared_w2", "shared_gate"},
    "tiny-groups": {"shared_w1", "shared_w2"},  # the selection bias only selects: no gradient
    "tiny-oss": {"router_bias", "b1", "b2"},
    "tiny-input-scaled": {"shared_w1", "shared_w2"},
}
# few programs for the interpreter at T = 333 (one K step over the tiny presets' H; the tiles are not what
# these tests are about)
_TILE = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4, "num_stages": 2}
LARGE_TILES = {"topology": {"block": 64}, "sdd": _TILE, "dsd": _TILE}


def test_every_option_is_honoured_forward_and_backward():
    assert IMPL.backward
    for preset in OPTION_PRESETS:
        assert IMPL.spec_unsupported(get_preset(preset, "fp32")) is None, preset


@pytest.mark.parametrize("preset", OPTION_PRESETS)
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_forward_with_options(triton_device, preset, dtype):
    spec = get_preset(preset, dtype)
    runs = [(0, IMPL), (1, IMPL), (7, IMPL)]
    if (OPTION_PRESETS.index(preset) % 2 == 0) == (dtype == "fp32"):
        runs.append((333, dataclasses.replace(IMPL, fn=functools.partial(IMPL.fn, config=LARGE_TILES))))
    failures = []
    for num_tokens, impl in runs:
        outcome = run_case(impl, spec, Case(f"T={num_tokens}", num_tokens), triton_device, seed=SEED + num_tokens)
        if not outcome.ok:
            failures.append(f"T={num_tokens}: {outcome.error or outcome.result.message}")
    assert not failures, f"{spec.describe()}: " + "; ".join(failures)


@pytest.mark.parametrize(
    "preset, dtype, num_tokens",
    [
        ("tiny-shared", "fp32", 7),
        ("tiny-groups", "fp32", 7),
        ("tiny-oss", "fp32", 37),  # every expert hit, biases of idle experts are exact zeros elsewhere
        ("tiny-oss", "fp16", 7),
        ("tiny-input-scaled", "fp32", 7),
        ("tiny-input-scaled", "fp16", 1),
        ("tiny-shared", "fp32", 0),
    ],
)
def test_gradients_with_options(triton_device, preset, dtype, num_tokens):
    spec = get_preset(preset, dtype)
    outcome = run_grad_case(IMPL, spec, Case(f"T={num_tokens}", num_tokens), triton_device, seed=SEED + num_tokens)
    assert outcome.ok, f"{spec.describe()} T={num_tokens}: {outcome.summary()}"
    assert OPTION_GRADS[preset] <= set(outcome.results), sorted(outcome.results)


def test_bias_gradients_of_idle_experts_are_exact_zeros(triton_device):
    """Experts 3 and 4 get no token: their b1 and b2 gradients are exact zeros (written, not left as whatever
    the allocator held: it is poisoned first); with dy = 1, db2[e, n] is the sum of expert e's router weights."""
    spec = get_preset("tiny-oss", "fp32")  # E = 5, k = 2
    weights, x = make_case_inputs(spec, Case("experts 3, 4 idle", 9, never=(3, 4)), triton_device, SEED)
    leaves = [t.detach().clone().requires_grad_(True) for t in weights.parameters()]
    weights = weights.with_parameters(leaves)
    poison_allocator(torch.device(triton_device), 1 << 20)
    IMPL(x, weights).backward(torch.ones_like(x))
    grads = {name: leaf.grad for name, leaf in zip(weights.parameter_names(), leaves)}
    with torch.no_grad():
        routing = route(x, weights)
    assert not torch.isin(routing.ids, torch.tensor([3, 4], device=routing.ids.device)).any()
    assert grads["b1"][3:].eq(0).all() and grads["b2"][3:].eq(0).all()
    for e in range(3):
        expected = routing.weights[routing.ids == e].sum().expand_as(grads["b2"][e])
        torch.testing.assert_close(grads["b2"][e], expected, rtol=1e-5, atol=1e-6)
