"""N expert FFNs lowered densely to standard ONNX ops: every token through all N experts as two 2-D GEMMs,
weighted per (token, expert). Serves the routed experts of the portable graph (N = E, weighted by the
routing) and the shared experts of both flavours (N = S, weighted by the shared gate or not at all).

    h  = MatMul(x, W1cat)  viewed [T, N, G*I]      W1cat [H, N*G*I]: column block n = expert n's [gate; up]^T
    h  = h * w[..., None]                           weight on the input (Llama-4): FFN(w x) starts with w (x W1)
    h  = h + b1                                     b1 [N, G*I]
    a  = act(h)                                     [T, N, I]  (moebench.activations.apply_activation's definitions)
    a  = a * w[..., None]                           weight on the output; on the input: the chosen mask instead
    y  = MatMul(a viewed [T, N*I], W2cat)           W2cat [N*I, H]: row block n = expert n's w2^T; the sum over
                                                    the experts is the GEMM's K loop
    y  = y + MatMul(w or mask, b2)                  b2 [N, H]: each expert's down bias, weighted like its output
All in the compute dtype D (the spec's); the weights w come in fp32 and are cast once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx
import torch

from moebench.export.graph_common import INPUT_NAME, initializer, int64_const, onnx_dtype, scalar_const
from moebench.export.routing_graph import X_F32, NodeFn
from moebench.spec import MoESpec


@dataclass(frozen=True)
class Experts:
    """One group of N dense experts in the graph: the names of its initializers start with `prefix`."""

    prefix: str  # "" for the routed experts, "shared_" for the shared ones
    count: int  # N
    intermediate: int  # I (I_s for shared experts)
    bias: bool = False


def ffn_initializers(experts: Experts, w1: torch.Tensor, w2: torch.Tensor, b1=None, b2=None) -> list[onnx.TensorProto]:
    """W1cat [H, N*G*I], W2cat [N*I, H], b1 [N, G*I], b2 [N, H] (values unchanged) and the reshape constants."""
    n, gi, h = w1.shape
    p, i = experts.prefix, experts.intermediate
    inits = [
        initializer(f"{p}w1_cat", w1.detach().cpu().permute(2, 0, 1).reshape(h, n * gi).contiguous()),
        initializer(f"{p}w2_cat", w2.detach().cpu().permute(0, 2, 1).reshape(n * i, h).contiguous()),
        int64_const(f"{p}shape_t_n_gi", [0, n, gi]),  # 0 copies T (works at T=0, unlike -1)
        int64_const(f"{p}shape_t_ni", [0, n * i]),
    ]
    if b1 is not None:
        inits += [initializer(f"{p}b1", b1.detach().cpu()), initializer(f"{p}b2", b2.detach().cpu())]
    return inits


def activation_initializers(spec: MoESpec) -> list[onnx.TensorProto]:
    """The scalar constants `activation` reads, once per graph (routed and shared experts share them)."""
    dt, x = spec.dtype, spec.expert
    if spec.activation == "gelu":
        return [scalar_const(n, v, dt) for n, v in (("inv_sqrt2", 1 / math.sqrt(2)), ("one", 1.0), ("half", 0.5))]
    if spec.activation != "swiglu" or x.plain_swiglu:
        return []
    consts = {"swiglu_alpha": x.swiglu_alpha, "swiglu_up_offset": x.swiglu_up_offset}
    if x.swiglu_limit is not None:
        consts.update(swiglu_limit=x.swiglu_limit, swiglu_minus_limit=-x.swiglu_limit)
    return [scalar_const(n, v, dt) for n, v in consts.items()]


def activation(spec: MoESpec, h1: str, node: NodeFn, prefix: str) -> str:
    """[T, N, G*I] -> [T, N, I] in the compute dtype, as moebench.activations.apply_activation."""
    p, x = prefix, spec.expert
    if spec.activation == "swiglu":
        gate, up = node("Split", [h1], [f"{p}gate", f"{p}up"], axis=2, num_outputs=2)
        if x.swiglu_limit is not None:
            gate = node("Min", [gate, "swiglu_limit"], [f"{p}gate_clamped"])[0]
            up = node("Clip", [up, "swiglu_minus_limit", "swiglu_limit"], [f"{p}up_clamped"])[0]
        scaled = gate if x.swiglu_alpha == 1.0 else node("Mul", [gate, "swiglu_alpha"], [f"{p}gate_alpha"])[0]
        node("Sigmoid", [scaled], [f"{p}gate_sigmoid"])
        node("Mul", [gate, f"{p}gate_sigmoid"], [f"{p}glu"])
        if x.swiglu_up_offset != 0.0:
            up = node("Add", [up, "swiglu_up_offset"], [f"{p}up_offset"])[0]
        return node("Mul", [f"{p}glu", up], [f"{p}act"])[0]
    if spec.activation == "gelu":  # exact: 0.5 * h * (1 + erf(h / sqrt(2))); Erf runs from opset 18, Gelu from 20
        node("Mul", [h1, "inv_sqrt2"], [f"{p}h1_scaled"])
        node("Erf", [f"{p}h1_scaled"], [f"{p}h1_erf"])
        node("Add", [f"{p}h1_erf", "one"], [f"{p}h1_erf_1"])
        node("Mul", [h1, f"{p}h1_erf_1"], [f"{p}h1_gelu_2"])
        return node("Mul", [f"{p}h1_gelu_2", "half"], [f"{p}act"])[0]
    return node("Relu", [h1], [f"{p}act"])[0]


def dense_experts(
    spec: MoESpec,
    experts: Experts,
    node: NodeFn,
    *,
    weights: str | None = None,
    on_input: bool = False,
    mask: str | None = None,
    out: str | None = None,
) -> str:
    """The experts' summed output [T, H] in the compute dtype. weights: fp32 [T, N] per-(token, expert) weights
    (None: unweighted); on_input: they scale the expert's input (then `mask` [T, N] fp32 zeroes the experts
    not chosen, whose output with biases would not be 0). out: the output's name (default <prefix>ffn_out)."""
    p, d = experts.prefix, onnx_dtype(spec.dtype)
    out = out or f"{p}ffn_out"

    cast: dict[str, str] = {}

    def in_dtype(name: str) -> str:  # fp32 [T, N] weights in D, cast once
        if spec.dtype != torch.float32 and name not in cast:
            cast[name] = node("Cast", [name], [f"{name}_{p}d"], to=d)[0]
        return cast.get(name, name)

    def per_expert(name: str) -> str:
        return node("Unsqueeze", [in_dtype(name), "axis_last"], [f"{name}_{p}3d"])[0]

    node("MatMul", [INPUT_NAME, f"{p}w1_cat"], [f"{p}h1_flat"])
    h1 = node("Reshape", [f"{p}h1_flat", f"{p}shape_t_n_gi"], [f"{p}h1"])[0]
    if weights is not None and on_input:
        h1 = node("Mul", [h1, per_expert(weights)], [f"{p}h1_weighted"])[0]
    if experts.bias:
        h1 = node("Add", [h1, f"{p}b1"], [f"{p}h1_biased"])[0]
    act = activation(spec, h1, node, p)
    out_weights = mask if on_input else weights
    if out_weights is not None:
        act = node("Mul", [act, per_expert(out_weights)], [f"{p}act_weighted"])[0]
    node("Reshape", [act, f"{p}shape_t_ni"], [f"{p}act_flat"])
    if not experts.bias:
        return node("MatMul", [f"{p}act_flat", f"{p}w2_cat"], [out])[0]
    node("MatMul", [f"{p}act_flat", f"{p}w2_cat"], [f"{p}ffn_out_nobias"])
    node("MatMul", [in_dtype(out_weights), f"{p}b2"], [f"{p}b2_weighted"])  # routed experts: always weighted
    return node("Add", [f"{p}ffn_out_nobias", f"{p}b2_weighted"], [out])[0]


def shared_experts(spec: MoESpec, node: NodeFn) -> str:
    """The shared experts' output [T, H] in the compute dtype: sigmoid(x . gate_s) weights when gated."""
    gate = None
    if spec.shared.gated:
        x32 = INPUT_NAME if spec.dtype == torch.float32 else X_F32  # cast by the router (router_logits)
        node("MatMul", [x32, "shared_gate_t"], ["shared_gate_logits"])
        gate = node("Sigmoid", ["shared_gate_logits"], ["shared_gate_f32"])[0]
    experts = Experts("shared_", spec.shared.count, spec.shared.intermediate)
    return dense_experts(spec, experts, node, weights=gate)


def shared_initializers(spec: MoESpec, weights) -> list[onnx.TensorProto]:
    """The shared experts' W1cat / W2cat, and the gate [H, S] fp32 (exact upcast: gate logits run in fp32)."""
    if not spec.shared.count:
        return []
    experts = Experts("shared_", spec.shared.count, spec.shared.intermediate)
    inits = ffn_initializers(experts, weights.shared_w1, weights.shared_w2)
    if spec.shared.gated:
        gate_t = weights.shared_gate.detach().cpu().to(torch.float32).t().contiguous()  # [H, S]
        inits.append(initializer("shared_gate_t", gate_t))
    return inits
