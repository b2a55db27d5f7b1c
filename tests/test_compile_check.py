"""moebench.compile_check, whatever the implementation: recording on meta tensors, refusals, and
graph safety (a layer that runs on meta tensors never reads device data on the host).

Each Triton implementation's own recording and compile tests: tests/<implementation>/test_*_compile.py.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from moebench.compile_check import record_launches  # noqa: E402
from moebench.presets import get_preset  # noqa: E402


def test_no_tokens_no_launches():
    spec = get_preset("tiny", torch.float16)
    assert record_launches(spec, 0, impl="block_sparse", backward=True) == []
    assert record_launches(spec, 0, impl="triton_grouped") == []


def test_unknown_impl_is_refused():
    with pytest.raises(ValueError, match="impl"):
        record_launches(get_preset("tiny", torch.float16), 4, impl="naive_loop")


# -- graph safety: a layer that runs on meta tensors never reads device data on the host ----------
# Meta tensors hold no data, so .item(), .tolist(), bincount, nonzero and boolean masks raise on them.
# An implementation whose whole forward (and backward) runs on meta therefore has no host sync and no
# data-dependent shape: what a CUDA graph capture needs. The registry's graph_safe flag must agree.
@pytest.mark.parametrize("tokens", [1, 16, 4096])
@pytest.mark.parametrize("impl,backward", [("triton_grouped", False), ("block_sparse", False), ("block_sparse", True)])
def test_triton_layers_run_on_meta_tensors(impl, backward, tokens):
    spec = get_preset("qwen3-30b-a3b", torch.bfloat16)
    assert record_launches(spec, tokens, impl=impl, backward=backward)  # kernels recorded, torch code ran


@pytest.mark.parametrize("name", ["naive_loop", "padded_batch", "padded_batch_capacity", "grouped_mm"])
def test_graph_safe_flag_agrees_with_a_meta_run(name):
    import moebench.impls  # noqa: F401
    from moebench.registry import get
    from moebench.weights import empty_weights

    info = get(name)
    ok, reason = info.available("cpu")
    if not ok:
        pytest.skip(reason)
    spec = get_preset("tiny", torch.bfloat16)  # bf16: torch._grouped_mm's meta kernel wants it
    x = torch.empty(5, spec.hidden, device="meta", dtype=spec.dtype)
    try:
        info.fn(x, empty_weights(spec, "meta"))
        runs = True
    except (RuntimeError, NotImplementedError):
        runs = False
    assert runs == info.graph_safe
