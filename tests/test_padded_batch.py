"""padded_batch modes: dropless equals the reference; capacity mode reports what it drops."""

import torch

from moebench import registry
from moebench.impls.padded_batch import capacity_for
from moebench.parity import compare
from moebench.presets import get_preset
from moebench.reference import reference_moe
from moebench.stats import collect_stats
from moebench.weights import random_inputs, random_weights, steer_routing


def test_capacity_mode_equals_dropless_when_nothing_is_dropped():
    spec = get_preset("tiny", "fp32")
    w, x = random_weights(spec), random_inputs(spec, 40)
    with collect_stats() as stats:
        y = registry.get("padded_batch_capacity")(x, w, config={"capacity_factor": spec.num_experts / spec.top_k})
    assert int(stats["num_dropped"]) == 0
    assert compare(y, reference_moe(x, w), spec.dtype).ok


def test_capacity_mode_drops_overflow_and_reports_each_pair():
    spec = get_preset("tiny-many", "fp32")
    w, x = steer_routing(random_weights(spec), random_inputs(spec, 30), always=(0,))
    with collect_stats() as stats:
        y = registry.get("padded_batch_capacity")(x, w)
    capacity = capacity_for(30, spec.top_k, spec.num_experts, 1.25)
    assert stats["capacity"] == capacity
    dropped = stats["dropped_pairs"]
    assert dropped.shape == (30, spec.top_k)
    assert int(stats["num_dropped"]) == int(dropped.sum()) >= 30 - capacity  # expert 0 overflows
    # the output is exactly the reference without the reported pairs, and not the full reference
    assert compare(y, reference_moe(x, w, keep=~dropped), spec.dtype).ok
    assert not compare(y, reference_moe(x, w), spec.dtype).ok


def test_dropless_mode_reports_nothing_dropped():
    spec = get_preset("tiny-many", "fp32")
    w, x = steer_routing(random_weights(spec), random_inputs(spec, 30), always=(0,))
    with collect_stats() as stats:
        y = registry.get("padded_batch")(x, w)
    assert int(stats["num_dropped"]) == 0
    assert compare(y, reference_moe(x, w), spec.dtype).ok


def test_backward_through_torch_implementations_reaches_all_weights():
    spec = get_preset("tiny", "fp32")
    w = random_weights(spec)
    for p in w.parameters():
        p.requires_grad_(True)
    x = random_inputs(spec, 8).requires_grad_(True)
    for name in ("naive_loop", "padded_batch"):
        y = registry.get(name)(x, w)
        grads = torch.autograd.grad(y.square().sum(), [x, *w.parameters()])
        assert all(g is not None and bool(g.abs().sum() > 0) for g in grads), name
