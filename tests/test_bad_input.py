"""Every bad-input path raises one MoEInputError that names the argument and the expectation."""

import math

import pytest
import torch

from moebench import registry
from moebench.errors import MoEInputError
from moebench.presets import get_preset
from moebench.weights import random_inputs, random_weights

SPEC = get_preset("tiny", "fp32")
W = random_weights(SPEC)
X = random_inputs(SPEC, 4)
CPU_IMPLS = [i.name for i in registry.all_impls() if i.available("cpu")[0] and i.kind in ("loop", "padded")]


def _nan_x():
    x = X.clone()
    x[1, 3] = math.nan
    return x


def _inf_x():
    x = X.clone()
    x[0, 0] = math.inf
    return x


BAD_CALLS = [
    (lambda: ([1.0], W, None), r"x: expected a torch.Tensor of shape \[T, 32\]"),
    (lambda: (X[:, :30], W, None), r"x: expected shape \[T, 32\] \(hidden=32\), got \[4, 30\]"),
    (lambda: (X[None], W, None), r"x: expected shape \[T, 32\]"),
    (lambda: (X.half(), W, None), r"x: expected dtype torch.float32 \(the spec's dtype\), got torch.float16"),
    (lambda: (X.to("meta"), W, None), r"x: expected device cpu"),
    (lambda: (_nan_x(), W, None), "x: expected finite values, found NaN or Inf"),
    (lambda: (_inf_x(), W, None), "x: expected finite values"),
    (lambda: (X, "weights", None), "weights: expected MoEWeights"),
    (lambda: (X, W, torch.empty(3, 32)), r"out: expected shape \[4, 32\]"),
    (lambda: (X, W, torch.empty(4, 32, dtype=torch.float16)), "out: expected shape"),
    (lambda: (X, W, torch.empty(32, 4).t()), "out: expected a contiguous tensor"),
]


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("make_call, match", BAD_CALLS)
def test_bad_call_raises_named_error(impl, make_call, match):
    x, w, out = make_call()
    with pytest.raises(MoEInputError, match=match):
        registry.get(impl)(x, w, out=out)


def test_capacity_factor_must_be_positive():
    with pytest.raises(MoEInputError, match=r"config\['capacity_factor'\]"):
        registry.get("padded_batch_capacity")(X, W, config={"capacity_factor": 0})


def test_weights_on_two_devices_rejected():
    with pytest.raises(MoEInputError, match="one device"):
        type(W)(SPEC, W.router.to("meta"), W.w1, W.w2)


def test_top_k_greater_than_experts_rejected():
    with pytest.raises(MoEInputError, match=r"top_k: expected 1 <= top_k <= num_experts=4, got 5"):
        SPEC.replace(top_k=5)


def test_negative_token_count_rejected():
    with pytest.raises(MoEInputError, match="num_tokens"):
        random_inputs(SPEC, -1)
