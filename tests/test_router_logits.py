"""moebench.routing.router_logits: which path computes the fp32 logits of 16-bit inputs.

Where torch has mm(out_dtype=float32) for the device (CUDA; meta tensors stand in for it here),
16-bit inputs go through it without an fp32 copy of x; on the CPU, and whenever a gradient must
flow, both inputs are upcast first. Every implementation routes through this one function, so
they all pick the same experts on a given device.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from moebench.routing import router_logits


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket.__name__) + "." + func._overloadname)
        return func(*args, **(kwargs or {}))


def _run(device: str, dtype: torch.dtype, requires_grad: bool = False) -> tuple[torch.Tensor, list[str]]:
    x = torch.randn(5, 32, device=device).to(dtype).requires_grad_(requires_grad)
    router = torch.randn(4, 32, device=device).to(dtype)
    router_logits(x.detach(), router)  # the first call probes the device once; count a later call
    with _Ops() as ops:
        logits = router_logits(x, router)
    return logits, ops.names


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_inputs_take_one_mixed_mm_where_the_device_has_it(dtype):
    logits, ops = _run("meta", dtype)
    assert logits.dtype == torch.float32 and logits.shape == (5, 4)
    assert ops == ["t.default", "mm.dtype"]  # no fp32 copy of x


def test_a_gradient_keeps_the_upcast_path():
    logits, ops = _run("meta", torch.bfloat16, requires_grad=True)
    assert logits.dtype == torch.float32
    assert "mm.dtype" not in ops and ops.count("_to_copy.default") == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_cpu_upcasts_and_matches_fp32(dtype):
    x = torch.randn(7, 24).to(dtype)
    router = torch.randn(3, 24).to(dtype)
    expected = x.float() @ router.float().t()
    assert torch.equal(router_logits(x, router), expected)


def test_fp64_logits_stay_fp64():
    x, router = torch.randn(3, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    assert router_logits(x, router, torch.float64).dtype == torch.float64


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_mixed_mm_agrees_with_the_upcast_path(dtype):
    """Same products (exact in fp32), fp32 sums in another order: logits within a few fp32 ulps."""
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4096, 2048, device="cuda", generator=g).to(dtype)
    router = (torch.randn(128, 2048, device="cuda", generator=g) / 45).to(dtype)
    mixed = router_logits(x, router)
    upcast = x.float() @ router.float().t()
    rel = (mixed - upcast).norm() / upcast.norm()
    assert mixed.dtype == torch.float32 and rel < 1e-6, rel
    top_mixed, top_upcast = mixed.topk(8).indices, upcast.topk(8).indices
    assert (top_mixed == top_upcast).all(dim=1).float().mean() > 0.999
