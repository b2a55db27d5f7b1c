"""Each family's transformers MoE block against moebench: its own forward, the fp64 reference of the converted
weights, and every registered implementation that accepts the converted spec, at T in {0, 1, 7, 333}.

fp32: the module and every implementation within 1e-5 relative L2 of the reference (and moebench.parity's
gate). bf16: implementations within the tolerance table. What the spec cannot state, said here explicitly:
in bf16 most modules compute their router logits in bf16 (F.linear in the module dtype; DeepSeek-V3 and
GLM-4.5 upcast to fp32 first), while the spec, and every implementation, computes them in fp32. So in bf16
the module is compared with the reference on ITS OWN choice of experts, and its choice must equal the
spec's except on tokens whose choice is a near tie at bf16 resolution (a few of 333).
fp16: the exported layers (ONNX Runtime's CPU provider has no bf16 MatMul) within the tolerance table.
Triton implementations run in the interpreter on CPU tensors (about 1 s a call at T=333 on these small
shapes), compiled on CUDA tensors on a GPU machine, at every T.
"""

import warnings

import pytest
import torch
from families import FAMILIES, FAMILY, randomize, run_block

from moebench import registry
from moebench.hf import weights_from_hf
from moebench.parity import compare, poisoned_like
from moebench.reference import reference_from_routing, reference_moe
from moebench.routing import Routing, route

pytest.importorskip("transformers")

TOKENS = (0, 1, 7, 333)
FP32_REL_L2 = 1e-5
MAX_BF16_ROUTING_FLIPS = 0.03  # of the tokens: near ties at bf16 resolution, see the module docstring


def _inputs(hidden: int, num_tokens: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(num_tokens, hidden, generator=torch.Generator().manual_seed(100 + num_tokens)).to(dtype)


def _converted(family: str, dtype: torch.dtype):
    block = randomize(FAMILY[family].make()).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the module holds one dtype: nothing may be rounded
        return block, weights_from_hf(block)


def implementations(spec, device: str, kind: str | None = None) -> list:
    """Every registered implementation (of `kind`, when given) that accepts `spec` and runs on `device`
    (documented token dropping aside: it is not the module's layer)."""
    return [
        info
        for info in registry.all_impls()
        if not info.drops_tokens
        and kind in (None, info.kind)
        and info.spec_unsupported(spec) is None
        and info.available(device)[0]
    ]


def _check_implementations(weights, dtype, device: str, limit: float | None, kind: str | None = None) -> list[str]:
    """Every implementation (of `kind`) against the fp64 reference at every T; the failures, described."""
    failures = []
    on_device = weights.to(device)
    for info in implementations(weights.spec, device, kind):
        for t in TOKENS:
            x = _inputs(weights.spec.hidden, t, dtype)
            ref = reference_moe(x, weights)
            xd = x.to(device)
            try:
                out = info(xd, on_device, out=poisoned_like(xd)).cpu()
            except Exception as exc:
                failures.append(f"{info.name} T={t}: {type(exc).__name__}: {exc}")
                continue
            result = compare(out, ref, dtype)
            if not result.ok or (limit is not None and result.rel_l2 > limit):
                failures.append(f"{info.name} T={t}: {result}")
    return failures


@pytest.mark.parametrize("family", [f.name for f in FAMILIES])
def test_fp32_module_reference_and_implementations_agree(family, device, triton_device):  # Triton ones: there
    block, weights = _converted(family, torch.float32)
    for t in TOKENS:
        x = _inputs(weights.spec.hidden, t, torch.float32)
        result = compare(run_block(block, x), reference_moe(x, weights), torch.float32)
        assert result.ok and result.rel_l2 <= FP32_REL_L2, f"{family} module T={t}: {result}"
    failures = _check_implementations(weights, torch.float32, device, FP32_REL_L2)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("family", [f.name for f in FAMILIES])
def test_bf16_module_reference_and_implementations_agree(family, device, triton_device):  # Triton ones: there
    block, weights = _converted(family, torch.bfloat16)
    for t in TOKENS:
        x = _inputs(weights.spec.hidden, t, torch.bfloat16)
        with torch.no_grad():
            hf_weights, hf_ids = FAMILY[family].routing(block, x)
        ref = reference_from_routing(x, weights, Routing(hf_weights, hf_ids))
        result = compare(run_block(block, x), ref, torch.bfloat16)
        assert result.ok, f"{family} module T={t} (its own routing): {result}"
        ours = route(x, weights).ids.sort(dim=-1).values
        flips = int((ours != hf_ids.sort(dim=-1).values).any(dim=-1).sum())
        assert flips <= MAX_BF16_ROUTING_FLIPS * t, f"{family} T={t}: {flips} tokens routed differently"
    failures = _check_implementations(weights, torch.bfloat16, device, None)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("family", [f.name for f in FAMILIES])
def test_fp16_exported_layers_agree(family, device):
    """fp16, the 16-bit type ONNX Runtime's CPU provider runs (bf16 has no CPU MatMul): each family's layer
    exported in both flavours (every deployed implementation on this device) within the fp16 tolerance."""
    _, weights = _converted(family, torch.float16)
    if device == "cpu":
        names = {info.name for info in implementations(weights.spec, device, "deployed")}
        assert {"ort-cpu:portable", "ort-cpu:ort-fused"} <= names, names
    failures = _check_implementations(weights, torch.float16, device, None, kind="deployed")
    assert not failures, "\n".join(failures)


def test_the_implementations_checked_include_the_exported_and_reference_ones(device):
    """The loop above is not empty: the converted gpt-oss and DeepSeek-V3 layers run in the exported graphs."""
    for family in ("gpt_oss", "deepseek_v3", "mixtral"):
        _, weights = _converted(family, torch.float32)
        names = {info.name for info in implementations(weights.spec, device)}
        if device == "cpu":
            assert {"ort-cpu:portable", "ort-cpu:ort-fused"} <= names, (family, names)
        if family == "mixtral":
            assert {"naive_loop", "grouped_mm"} <= names, names
