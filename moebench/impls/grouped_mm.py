"""grouped_mm (peer): the layer as PyTorch's own grouped GEMM, `torch._grouped_mm`.

route -> sort the (token, slot) pairs by expert (argsort + searchsorted: no host sync)
-> gather the tokens -> grouped GEMM with w1 (int32 `offs` = cumulative pairs per expert) (+ b1) ->
activation -> grouped GEMM with w2 (+ b2) -> weighted index_add into an fp32 accumulator.

Every spec option: the router's through moebench.routing; input weighting scales the gathered rows; expert
biases are gathered per pair. Shared experts with the routed experts' intermediate size (DeepSeek-V3,
Kimi-K2, GLM-4.5-Air, Llama-4) are appended to the weights as always-hit experts E..E+S-1, so they run in
the same two grouped GEMMs (their pairs weighted by the shared gate, or 1); other sizes (Qwen1.5-MoE) run
as a dense GEMM pair per shared expert. Which one ran is recorded as stat "shared_experts" (the bench notes
it).

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

from moebench.activations import (
    add_shared_experts,
    apply_activation,
    expert_inputs,
    output_weights,
    shared_gate_weights,
)
from moebench.quant.fp8 import fake_quantize_activations
from moebench.registry import any_quant, register
from moebench.routing import route_unless_given
from moebench.spec import FEATURES, MoESpec
from moebench.stats import SHARED_STAT, record_stat
from moebench.weights import MoEWeights


def _aligned(n: int, dtype: torch.dtype) -> int:
    """n rounded up so n elements of dtype span a multiple of 16 bytes."""
    multiple = 16 // torch.tensor([], dtype=dtype).element_size()
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class _Layout:
    """Operands for torch._grouped_mm (views when nothing is padded or appended): n = E, or E + S with the
    shared experts appended. w1t [n, Hp, G*Ip], w2t [n, Ip, Hp], b1 [n, G*Ip], b2 [n, Hp] (None without
    expert biases; zero for shared experts)."""

    hidden: int  # Hp
    w1t: torch.Tensor
    w2t: torch.Tensor
    b1: torch.Tensor | None
    b2: torch.Tensor | None
    shared_grouped: bool


def shared_as_experts(spec: MoESpec) -> bool:
    """Whether the shared experts can join the routed ones in the grouped GEMMs (same intermediate size, and no
    activation quantisation: a w8a8 format quantises the routed experts' GEMM inputs, not the shared ones')."""
    if spec.quant is not None and spec.quant_format.act_group:
        return False
    return spec.shared.count > 0 and spec.shared.intermediate == spec.intermediate


def _pad_blocks(t: torch.Tensor, groups: int, size: int, padded: int) -> torch.Tensor:
    """[n, groups*size, ...] -> [n, groups*padded, ...]: each of the `groups` blocks zero-padded to `padded`."""
    out = t.new_zeros(t.shape[0], groups * padded, *t.shape[2:])
    for g in range(groups):
        out[:, g * padded : g * padded + size] = t[:, g * size : (g + 1) * size]
    return out


def _make_layout(weights: MoEWeights) -> _Layout:
    spec = weights.spec
    h, i = spec.hidden, spec.intermediate
    dtype = _compute_dtype(weights)
    hp, ip = _aligned(h, dtype), _aligned(i, dtype)
    grouped = shared_as_experts(spec)
    w1, w2 = weights.dequantized(dtype)  # w1, w2 themselves unless quantised
    b1, b2 = weights.b1, weights.b2
    if grouped:
        w1, w2 = torch.cat([w1, weights.shared_w1.to(dtype)]), torch.cat([w2, weights.shared_w2.to(dtype)])
        if b1 is not None:
            b1 = torch.cat([b1, b1.new_zeros(spec.shared.count, b1.shape[1])])
            b2 = torch.cat([b2, b2.new_zeros(spec.shared.count, h)])
    if (hp, ip) == (h, i):
        # [n, G*I, H] viewed as [n, H, G*I]: column-major per expert, the layout CUTLASS wants
        return _Layout(h, w1.transpose(1, 2), w2.transpose(1, 2), b1, b2, grouped)
    groups = spec.w1_rows // i  # gate block, then up block, each padded to Ip rows
    w1p = _pad_blocks(w1, groups, i, ip)
    w1p = torch.cat([w1p, w1p.new_zeros(*w1p.shape[:2], hp - h)], dim=2)
    w2p = w2.new_zeros(w2.shape[0], hp, ip)
    w2p[:, :h, :i] = w2
    if b1 is not None:
        b1 = _pad_blocks(b1, groups, i, ip)
        b2 = torch.cat([b2, b2.new_zeros(b2.shape[0], hp - h)], dim=1)
    return _Layout(hp, w1p.transpose(1, 2), w2p.transpose(1, 2), b1, b2, grouped)


def _pairs(x: torch.Tensor, weights: MoEWeights, layout: _Layout, routing) -> tuple:
    """(ids, input factors, output factors), each [T, P]: the routed pairs (P = k), plus one pair per shared
    expert (ids E..E+S-1, input factor 1, output factor the shared gate or 1) when they run as experts."""
    spec = weights.spec
    topk_weights, topk_ids = routing
    ones = lambda n: torch.ones(x.shape[0], n, dtype=torch.float32, device=x.device)  # noqa: E731
    ids, in_w, out_w = topk_ids, topk_weights, output_weights(spec, topk_weights)
    if layout.shared_grouped:
        count, first = spec.shared.count, spec.num_experts
        shared_ids = torch.arange(first, first + count, device=x.device).expand(x.shape[0], count)
        gate = shared_gate_weights(x, weights.shared_gate) if spec.shared.gated else ones(count)
        ids, in_w, out_w = (
            torch.cat([ids, shared_ids], 1),
            torch.cat([in_w, ones(count)], 1),
            torch.cat([out_w, gate], 1),
        )
    return ids, in_w, out_w


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
    features=FEATURES,
    quant=any_quant,
)
def grouped_mm(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    spec = weights.spec
    if x.shape[0] == 0:
        return x.new_zeros(x.shape) if out is None else out
    if torch.is_grad_enabled() and any(p.requires_grad for p in weights.parameters()):
        layout = _make_layout(weights)  # training: a cached layout would carry a stale autograd graph
    else:
        layout = weights.derived("grouped_mm/layout", _make_layout)
    ids, in_w, out_w = _pairs(x, weights, layout, route_unless_given(x, weights, routing))  # [T, P] each
    order, offs = _group_by_expert(ids, layout.w1t.shape[0])  # [T*P] int64, [n] int32
    token_of_pair, sorted_expert = order // ids.shape[1], ids.reshape(-1)[order]  # [T*P]
    group = None if weights.quant is None else weights.quant.fmt.act_group
    rows = expert_inputs(spec, x[token_of_pair].to(layout.w1t.dtype), in_w.reshape(-1)[order])  # [T*P, H]
    if group is not None:  # w8a8: the GEMM inputs as quantised, in fp32 (see _compute_dtype)
        rows = fake_quantize_activations(rows.float(), group)
    if layout.hidden == spec.hidden:
        xs = rows
    else:
        xs = rows.new_zeros(order.numel(), layout.hidden)  # [T*P, Hp]
        xs[:, : spec.hidden] = rows
    h1 = torch._grouped_mm(xs, layout.w1t, offs=offs)  # [T*P, G*Ip]
    if layout.b1 is not None:
        h1 = h1 + layout.b1[sorted_expert]
    h = apply_activation(spec, h1).contiguous()  # [T*P, Ip]
    if group is not None:
        h = fake_quantize_activations(h, group)
    y = torch._grouped_mm(h, layout.w2t, offs=offs)  # [T*P, Hp]
    if layout.b2 is not None:
        y = y + layout.b2[sorted_expert]
    acc = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    acc.index_add_(0, token_of_pair, y[:, : spec.hidden].float() * out_w.reshape(-1)[order, None])
    if layout.shared_grouped:
        record_stat(SHARED_STAT, "grouped GEMMs (as extra experts)")
    else:
        add_shared_experts(acc, x, weights)
    if out is None:
        return acc.to(x.dtype)
    return out.copy_(acc)
