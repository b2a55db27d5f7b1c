"""The local compute pieces: expert slices and the fp64 layer for a given routing (single process)."""

from __future__ import annotations

import pytest
import torch

import moebench
from moebench.ep import (
    Placement,
    local_unsupported,
    rank_layer,
    reference_local_compute,
    routed_reference,
    shared_output,
    slice_experts,
)
from moebench.errors import MoEInputError
from moebench.presets import get_preset
from moebench.reference import reference_moe
from moebench.routing import route
from moebench.weights import random_inputs, random_weights


@pytest.mark.parametrize("preset", ["tiny", "tiny-many", "tiny-gelu"])
def test_routed_reference_with_the_routers_routing_is_the_reference(preset):
    spec = get_preset(preset, "fp32")
    weights = random_weights(spec, seed=4)
    x = random_inputs(spec, 23, seed=5)
    topk_weights, topk_ids = route(x.double(), weights, compute_dtype=torch.float64)
    got = routed_reference(x, weights, topk_weights, topk_ids)
    assert torch.allclose(got, reference_moe(x, weights), rtol=1e-12, atol=1e-12)


def test_slice_and_local_compute_run_the_named_experts():
    spec = get_preset("tiny-many", "fp32")
    weights = random_weights(spec, seed=1)
    x = random_inputs(spec, 9, seed=2)
    experts = [11, 3, 3]  # a copy may repeat
    local = slice_experts(weights, experts)
    assert local.spec.num_experts == 3 and local.spec.top_k == 1
    assert torch.equal(local.w1[0], weights.w1[11]) and torch.equal(local.w2[2], weights.w2[3])
    local_ids = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    pair_weights = torch.rand(9)
    y = reference_local_compute(x, local_ids, pair_weights, local)
    expected = routed_reference(x, weights, pair_weights[:, None], torch.tensor(experts)[local_ids][:, None])
    assert y.dtype == x.dtype and torch.allclose(y.double(), expected, rtol=1e-6, atol=1e-7)
    assert reference_local_compute(x[:0], local_ids[:0], pair_weights[:0], local).shape == (0, spec.hidden)
    with pytest.raises(MoEInputError, match="experts"):
        slice_experts(weights, [16])


def test_rank_layer_holds_plain_routed_experts_and_the_shared_ones():
    weights = random_weights(get_preset("tiny-input-scaled", "fp32"), seed=3)
    layer = rank_layer(weights, Placement.round_robin(4, 2), 1)
    assert layer.input_weighted and layer.routed.spec.router.weight_on == "output"
    assert torch.equal(layer.routed.w1[1], weights.w1[3]) and layer.routed.spec.num_experts == 2
    assert layer.shared.spec.num_experts == 1 and layer.shared.spec.intermediate == 44 and layer.shared_gate is None
    x = random_inputs(weights.spec, 5, seed=4)
    shared = shared_output(x, layer, reference_local_compute)
    all_shared = reference_moe(x, weights) - routed_reference(
        x, weights, *route(x.double(), weights, compute_dtype=torch.float64)
    )
    assert shared.dtype == torch.float32 and torch.allclose(shared.double(), all_shared, rtol=1e-5, atol=1e-6)
    assert rank_layer(random_weights(get_preset("tiny", "fp32")), Placement.contiguous(4, 2), 0).shared is None
    with pytest.raises(MoEInputError, match="rank"):
        rank_layer(weights, Placement.round_robin(4, 2), 2)


def test_local_unsupported_names_what_cannot_be_a_local_compute():
    spec = get_preset("tiny-shared", "fp32")
    assert local_unsupported(moebench.get("grouped_mm"), spec) is None  # shared experts run as a layer of their own
    assert "drops tokens" in local_unsupported(moebench.get("padded_batch_capacity"), spec)
    fp64 = local_unsupported(moebench.get("grouped_mm"), get_preset("tiny", "fp64"))
    assert fp64 and "dtype" in fp64
