"""The single source of truth: the MoE layer in float64.

Tests, `moebench verify`, benchmarks' parity column and export parity all compare against
`reference_moe`. It is differentiable (router, biases, expert and shared weights), so backward parity
uses its autograd too. Two steps, each a function:
  reference_moe(x, weights, keep=None)                        chooses on fp32 logits, weighs in fp64, then
  reference_from_routing(x, weights, routing, keep=None)      everything after the choice of experts
so a caller with its own routing (a drawn one, or the implementations' fp32 choice) reuses the rest.
Quantised experts (spec.quant): the reference computes on the exactly dequantised weights (and, for
formats that quantise activations, fp8-block128, on the quantised-dequantised GEMM inputs), so the gate
measures the kernel, not the quantisation; `reference_unquantized` is the layer quantisation approximates.
"""

from __future__ import annotations

import torch

from moebench.activations import expert_ffn, shared_experts
from moebench.routing import Routing, route, router_logits, router_scores, weights_at
from moebench.weights import MoEWeights

F64 = torch.float64


def reference_moe(
    x: torch.Tensor,
    weights: MoEWeights,
    keep: torch.Tensor | None = None,
    *,
    round_h1_to: torch.dtype | None = None,
    row_scale: torch.Tensor | None = None,
    row_slack: torch.Tensor | None = None,
) -> torch.Tensor:
    """x: [T, H] any float dtype -> [T, H] float64.

    Expert selection comes from the fp32 router logits every implementation uses
    (moebench.routing.route); the routing weights, FFN and combine are fp64. Selecting on fp64
    logits instead would pick the other expert wherever two scores differ by less than fp32
    rounding, and fail every implementation there; such near ties are accepted either way by the
    parity gate (moebench.parity.ties).

    keep: optional [T, k] bool; pairs (token, slot) marked False contribute nothing. Only for
    checking implementations that document token dropping against the pairs they dropped.
    round_h1_to: the activations see h1 rounded to that dtype (activations.expert_ffn); the gradient
    gate's second reading of a 16-bit layer with a SwiGLU clamp.
    row_scale, row_slack: optional [T] fp64 zeros, filled as in reference_from_routing.
    """
    spec = weights.spec
    with torch.no_grad():
        ids = route(x, weights).ids
    logits = router_logits(x, weights.router, compute_dtype=F64, bias=weights.router_bias)
    routing = Routing(weights_at(router_scores(logits, spec), ids, spec), ids)
    return reference_from_routing(
        x, weights, routing, keep=keep, round_h1_to=round_h1_to, row_scale=row_scale, row_slack=row_slack
    )


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(F64)


def reference_from_routing(
    x: torch.Tensor,
    weights: MoEWeights,
    routing: Routing,
    keep: torch.Tensor | None = None,
    *,
    round_h1_to: torch.dtype | None = None,
    row_scale: torch.Tensor | None = None,
    row_slack: torch.Tensor | None = None,
) -> torch.Tensor:
    """The layer in fp64 for a given routing (weights [T, k] any float dtype, ids [T, k]): routed experts
    (output- or input-weighted, with their biases and activation options) plus the shared experts.

    row_scale: optional [T] fp64 zeros; receives each token's sum of the sizes of the terms its output
    row sums (each expert's weighted output row and each shared expert's, the size of a row at least
    the root sum of squares of its down projection's terms: expert_ffn's term_scale): rounding errors
    are relative to it, not to the sum, which may cancel (the parity gate's row check).

    row_slack: optional [T] fp64 zeros; with a format that quantises activations (fp8-block128) it receives
    each token's sum over its experts of |routing weight| * expert_ffn's requant_slack: how far a correct
    implementation's row may be from this one because an activation lay on an e4m3 rounding boundary.

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
        sizes = None if row_scale is None else []  # expert_ffn's term size per row
        slack = None if row_slack is None or act_group is None else []  # and its requantisation slack
        options = dict(round_h1_to=round_h1_to, act_group=act_group, term_scale=sizes, requant_slack=slack)
        if on_input:  # Llama-4: the router weight scales the expert's input
            y = expert_ffn(spec, x64[token_idx] * w, *tensors, **options)
            factor = torch.ones_like(w)
        else:
            y = expert_ffn(spec, x64[token_idx], *tensors, **options) * w
            factor = w.detach().abs()
        if kept is not None:
            y = y * kept[token_idx, slot, None]
            factor = factor * kept[token_idx, slot, None]
        out = out.index_add(0, token_idx, y)
        if row_scale is not None:
            row_scale.index_add_(0, token_idx, sizes[0] * factor[:, 0])
        if slack:
            row_slack.index_add_(0, token_idx, slack[0] * factor[:, 0])
    if spec.shared.count:
        shared = (weights.shared_w1, weights.shared_w2, weights.shared_gate)
        out = out + shared_experts(spec, x64, *shared, F64, round_h1_to=round_h1_to, term_scale=row_scale)
    return out


def reference_unquantized(x: torch.Tensor, weights: MoEWeights, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The fp64 layer on the unquantised experts (w1/w2) of a quantised `weights`: what quantisation costs is
    an output's error against this (reference_moe itself when `weights` are not quantised)."""
    return reference_moe(x, weights if weights.quant is None else weights.unquantized(), keep=keep)
