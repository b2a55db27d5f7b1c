"""The registry: capabilities, availability reasons, loud failures, plugins."""

import pytest
import torch

from moebench import registry
from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.presets import get_preset
from moebench.weights import random_inputs, random_weights


def test_builtins_are_registered_and_available_on_cpu():
    for name in ("naive_loop", "padded_batch", "padded_batch_capacity"):
        info = registry.get(name)
        assert info.available("cpu") == (True, "ok")
        assert info.backward
    assert registry.get("padded_batch_capacity").drops_tokens
    assert not registry.get("padded_batch").drops_tokens
    assert [i.name for i in registry.all_impls() if i.baseline] == ["naive_loop"]


def test_unknown_name_fails_loudly():
    with pytest.raises(UnknownImplementationError, match="unknown implementation 'nope'.*naive_loop"):
        registry.get("nope")


def test_duplicate_name_fails_loudly():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("naive_loop", kind="loop", description="dup")(lambda x, w, out=None, config=None: x)


def test_bad_kind_fails():
    with pytest.raises(ValueError, match="kind"):
        registry.register("x", kind="magic", description="")


def test_availability_reasons():
    registry.register("needs_pkg", kind="peer", description="t", requires=("surely_not_installed_pkg",))(
        lambda *a, **k: None
    )
    registry.register("cuda_only", kind="peer", description="t", devices=("cuda",))(lambda *a, **k: None)
    try:
        ok, reason = registry.get("needs_pkg").available("cpu")
        assert not ok and "surely_not_installed_pkg" in reason
        ok, reason = registry.get("cuda_only").available("cpu")
        assert not ok and "cuda only" in reason
        if not torch.cuda.is_available():
            ok, reason = registry.get("naive_loop").available("cuda")
            assert not ok and "CUDA" in reason
    finally:
        registry.unregister("needs_pkg")
        registry.unregister("cuda_only")


def test_every_implementation_has_the_same_signature():
    import inspect

    for info in registry.all_impls():
        params = inspect.signature(info.fn).parameters
        assert list(params)[:2] == ["x", "weights"], info.name
        assert params["out"].kind is inspect.Parameter.KEYWORD_ONLY, info.name
        assert params["config"].kind is inspect.Parameter.KEYWORD_ONLY, info.name


def test_call_rejects_unsupported_dtype():
    registry.register("fp32_only", kind="peer", description="t", dtypes=(torch.float32,))(
        lambda x, w, out=None, config=None: x
    )
    try:
        spec = get_preset("tiny", "bf16")
        with pytest.raises(MoEInputError, match=r"dtype: fp32_only supports \['float32'\]"):
            registry.get("fp32_only")(random_inputs(spec, 2), random_weights(spec))
    finally:
        registry.unregister("fp32_only")


def test_select_keeps_named_and_filters_unnamed():
    chosen = registry.select(None, "cpu", torch.float32)
    assert {"naive_loop", "padded_batch"} <= {i.name for i in chosen}
    assert all(i.available("cpu")[0] for i in chosen)
    assert [i.name for i in registry.select(["padded_batch"], "cpu")] == ["padded_batch"]
