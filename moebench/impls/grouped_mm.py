"""grouped_mm (peer): the layer as PyTorch's own grouped GEMM, `torch._grouped_mm`.

route -> sort the T*k (token, slot) pairs by expert (argsort + searchsorted: no host sync)
-> gather the tokens -> grouped GEMM with w1 (int32 `offs` = cumulative pairs per expert) ->
activation -> grouped GEMM with w2 -> weighted index_add into an fp32 accumulator.

What torch._grouped_mm supports (read from ATen, checked on torch 2.13 CPU):
  * dtypes fp32, fp16, bf16 (fp64 is refused) on CPU and CUDA; output dtype = input dtype.
  * every operand's row stride must be a multiple of 16 bytes (H and I multiples of 4 in fp32,
    of 8 in fp16/bf16). For other shapes this module pads H and I with zeros once per weights
    (a cached derived layout; zero rows/columns leave the result exact) and pads x in the gather.
  * CUDA: bf16 on sm90/sm100 takes the CUTLASS fast path (no host sync, CUDA-graph capturable).
    Other dtypes or GPUs take ATen's fallback, a loop of mm over `offs.cpu()`: correct but it
    syncs with the host, so CUDA-graph capture fails there (the bench records the eager time and
    notes the failed capture). `available()` runs a tiny probe and reports the error if the op
    itself does not run on this build/device.
Quantised experts (spec.quant): dequantised up front to the spec dtype, once per weights (the cached
layout), with fp8-block128's activations quantised-dequantised per token group before each GEMM: the
"what you would do without a kernel" baseline, reading full-size weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from moebench.activations import apply_activation
from moebench.quant.fp8 import fake_quantize_activations
from moebench.registry import any_quant, register
from moebench.routing import route_unless_given
from moebench.spec import MoESpec
from moebench.weights import MoEWeights


def _aligned(n: int, dtype: torch.dtype) -> int:
    """n rounded up so n elements of dtype span a multiple of 16 bytes."""
    multiple = 16 // torch.tensor([], dtype=dtype).element_size()
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class _Layout:
    """Operands for torch._grouped_mm: w1t [E, Hp, G*Ip], w2t [E, Ip, Hp] (views when no padding)."""

    spec: MoESpec  # the spec with intermediate = Ip (for the activation split)
    hidden: int  # Hp
    w1t: torch.Tensor
    w2t: torch.Tensor


def _make_layout(weights: MoEWeights) -> _Layout:
    spec = weights.spec
    h, i = spec.hidden, spec.intermediate
    dtype = _compute_dtype(weights)
    hp, ip = _aligned(h, dtype), _aligned(i, dtype)
    w1_in, w2_in = weights.dequantized(dtype)  # w1, w2 themselves unless quantised
    if (hp, ip) == (h, i):
        # [E, G*I, H] viewed as [E, H, G*I]: column-major per expert, the layout CUTLASS wants
        return _Layout(spec, h, w1_in.transpose(1, 2), w2_in.transpose(1, 2))
    e, groups = spec.num_experts, spec.w1_rows // i
    w1 = w1_in.new_zeros(e, groups * ip, hp)
    for g in range(groups):  # gate block, then up block, each padded to Ip rows
        w1[:, g * ip : g * ip + i, :h] = w1_in[:, g * i : (g + 1) * i]
    w2 = w2_in.new_zeros(e, hp, ip)
    w2[:, :h, :i] = w2_in
    return _Layout(spec.replace(intermediate=ip), hp, w1.transpose(1, 2), w2.transpose(1, 2))


def _compute_dtype(weights: MoEWeights) -> torch.dtype:
    """fp32 for formats that quantise activations (their GEMM inputs are re-quantised from an fp32 h, as the
    quantised kernels do; a bf16 h would flip e4m3 codes), else the spec dtype."""
    quant = weights.quant
    return torch.float32 if quant is not None and quant.fmt.act_group else weights.spec.dtype


def _group_by_expert(topk_ids: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order [T*k]: pair indices sorted by expert, stable; offs [E] int32: end row of each group).

    argsort + searchsorted, so no host sync (torch.bincount on CUDA reads the ids' min/max on
    the host, which would break CUDA-graph capture).
    """
    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    experts = torch.arange(num_experts, device=flat.device, dtype=flat.dtype)
    offs = torch.searchsorted(flat[order], experts, right=True).to(torch.int32)
    return order, offs


@functools.cache
def _probe(device: str) -> str | None:
    """None when torch._grouped_mm runs on `device`, else why not (first failure, cached)."""
    if not hasattr(torch, "_grouped_mm"):
        return f"torch {torch.__version__} has no torch._grouped_mm"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    try:
        a = torch.ones(4, 16, device=device, dtype=dtype)
        b = torch.ones(2, 16, 16, device=device, dtype=dtype)
        offs = torch.tensor([2, 4], device=device, dtype=torch.int32)
        torch._grouped_mm(a, b, offs=offs)
    except Exception as exc:  # the op is missing or broken for this device/build
        return f"torch._grouped_mm fails on {device} ({dtype}): {type(exc).__name__}: {str(exc)[:160]}"
    return None


@register(
    "grouped_mm",
    kind="peer",
    description="torch._grouped_mm: sort pairs by expert, grouped GEMMs w1/w2, weighted index_add",
    requires=("grouped_mm",),
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    backward=True,
    graph_safe=True,
    extra_check=_probe,
    quant=any_quant,
)
def grouped_mm(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    spec = weights.spec
    num_tokens, k = x.shape[0], spec.top_k
    if num_tokens == 0:
        return x.new_zeros(x.shape) if out is None else out
    if torch.is_grad_enabled() and any(p.requires_grad for p in weights.parameters()):
        layout = _make_layout(weights)  # training: a cached layout would carry a stale autograd graph
    else:
        layout = weights.derived("grouped_mm/layout", _make_layout)
    topk_weights, topk_ids = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    order, offs = _group_by_expert(topk_ids, spec.num_experts)  # [T*k] int64, [E] int32
    token_of_pair = order // k  # [T*k]
    group = None if weights.quant is None else weights.quant.fmt.act_group
    # w8a8: the GEMM inputs as quantised, in fp32 (see _compute_dtype)
    a = x if group is None else fake_quantize_activations(x.float(), group)
    if layout.hidden == spec.hidden:
        xs = a[token_of_pair]  # [T*k, H]
    else:
        xs = a.new_zeros(order.numel(), layout.hidden)  # [T*k, Hp]
        xs[:, : spec.hidden] = a[token_of_pair]
    h1 = torch._grouped_mm(xs, layout.w1t, offs=offs)  # [T*k, G*Ip]
    h = apply_activation(layout.spec, h1).contiguous()  # [T*k, Ip]
    if group is not None:
        h = fake_quantize_activations(h, group)
    y = torch._grouped_mm(h, layout.w2t, offs=offs)[:, : spec.hidden]  # [T*k, H]
    pair_weight = topk_weights.reshape(-1)[order]  # [T*k] fp32
    acc = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    acc.index_add_(0, token_of_pair, y.float() * pair_weight[:, None])
    if out is None:
        return acc.to(x.dtype)
    return out.copy_(acc)
