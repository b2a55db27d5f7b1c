"""The single source of truth: the MoE layer in float64.

Tests, `moebench verify`, benchmarks' parity column and export parity all compare against
`reference_moe`. It is differentiable (router, biases, expert and shared weights), so backward parity
uses its autograd too. Two steps, each a function:
  reference_moe(x, weights, keep=None)                        routes in fp64, then
  reference_from_routing(x, weights, routing, keep=None)      everything after the choice of experts
so a caller with its own routing (a drawn one, or the implementations' fp32 choice) reuses the rest.
Quantised experts (spec.quant): the reference computes on the exactly dequantised weights (and, for
formats that quantise activations, fp8-block128, on the quantised-dequantised GEMM inputs), so the gate
measures the kernel, not the quantisation; `reference_unquantized` is the layer quantisation approximates.
"""

from __future__ import annotations

import torch

from moebench.activations import expert_ffn, shared_experts
from moebench.routing import Routing, route
from moebench.weights import MoEWeights

F64 = torch.float64


def reference_moe(x: torch.Tensor, weights: MoEWeights, keep: torch.Tensor | None = None) -> torch.Tensor:
    """x: [T, H] any float dtype -> [T, H] float64. Routing, FFN and combine all in fp64.

    keep: optional [T, k] bool; pairs (token, slot) marked False contribute nothing. Only for
    checking implementations that document token dropping against the pairs they dropped.
    """
    routing = route(x.to(F64), weights, compute_dtype=F64)
    return reference_from_routing(x, weights, routing, keep=keep)


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(F64)


def reference_from_routing(
    x: torch.Tensor, weights: MoEWeights, routing: Routing, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """The layer in fp64 for a given routing (weights [T, k] any float dtype, ids [T, k]): routed experts
    (output- or input-weighted, with their biases and activation options) plus the shared experts.

    Expert weights are upcast one expert at a time: all of them in fp64 would not fit a GPU for the large
    presets (deepseek-v3: 90 GB).
    """
    spec = weights.spec
    x64 = x.to(F64)
    topk_weights, topk_ids = routing.weights.to(F64), routing.ids
    kept = None if keep is None else keep.to(device=x.device, dtype=F64)  # dropped pairs contribute 0
    on_input = spec.router.weight_on == "input"
    act_group = None if weights.quant is None else weights.quant.fmt.act_group
    out = torch.zeros_like(x64)
    for expert in range(spec.num_experts):
        token_idx, slot = torch.where(topk_ids == expert)
        if token_idx.numel() == 0:
            continue
        w = topk_weights[token_idx, slot, None]
        b1 = None if weights.b1 is None else weights.b1[expert]
        b2 = None if weights.b2 is None else weights.b2[expert]
        if weights.quant is None:
            tensors = tuple(map(_f64, (weights.w1[expert], weights.w2[expert], b1, b2)))
        else:
            tensors = (*weights.quant.expert(expert, F64), _f64(b1), _f64(b2))
        if on_input:  # Llama-4: the router weight scales the expert's input
            y = expert_ffn(spec, x64[token_idx] * w, *tensors, act_group=act_group)
        else:
            y = expert_ffn(spec, x64[token_idx], *tensors, act_group=act_group) * w
        if kept is not None:
            y = y * kept[token_idx, slot, None]
        out = out.index_add(0, token_idx, y)
    if spec.shared.count:
        out = out + shared_experts(spec, x64, weights.shared_w1, weights.shared_w2, weights.shared_gate, F64)
    return out


def reference_unquantized(x: torch.Tensor, weights: MoEWeights, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The fp64 layer on the unquantised experts (w1/w2) of a quantised `weights`: what quantisation costs is
    an output's error against this (reference_moe itself when `weights` are not quantised)."""
    return reference_moe(x, weights if weights.quant is None else weights.unquantized(), keep=keep)
