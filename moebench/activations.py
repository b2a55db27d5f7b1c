"""The expert FFN: its activations and the FFN itself, one definition used by the reference (in fp64) and
by the torch implementations (in the spec dtype), for routed and shared experts alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moebench.quant.fp8 import fake_quantize_activations
from moebench.spec import MoESpec


def apply_activation(spec: MoESpec, h1: torch.Tensor) -> torch.Tensor:
    """h1: [..., G*N] (first-layer output, biases included) -> [..., N]. N is read from h1 (I for routed
    experts, I_s for shared ones, a padded size in a padded layout), so one function serves all.

    swiglu: gate * sigmoid(alpha * gate) * (up + up_offset), gate = h1[..., :N], up = h1[..., N:], with
            gate clamped above and up clamped to [-limit, limit] when spec.expert.swiglu_limit is set;
            the plain SwiGLU (alpha 1, no limit, no offset) is silu(gate) * up.
    gelu:   exact (erf) GELU;  relu: max(h1, 0).
    """
    if spec.activation == "swiglu":
        half = h1.shape[-1] // 2
        gate, up = h1[..., :half], h1[..., half:]
        opts = spec.expert
        if opts.plain_swiglu:
            return F.silu(gate) * up
        if opts.swiglu_limit is not None:
            gate = gate.clamp(max=opts.swiglu_limit)
            up = up.clamp(min=-opts.swiglu_limit, max=opts.swiglu_limit)
        glu = F.silu(gate) if opts.swiglu_alpha == 1.0 else gate * torch.sigmoid(opts.swiglu_alpha * gate)
        return glu * (up + opts.swiglu_up_offset) if opts.swiglu_up_offset else glu * up
    if spec.activation == "gelu":
        return F.gelu(h1)
    return F.relu(h1)


def expert_ffn(
    spec: MoESpec,
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    b1: torch.Tensor | None = None,
    b2: torch.Tensor | None = None,
    act_group: int | None = None,
) -> torch.Tensor:
    """One expert on x [n, H]: act(x @ w1.T + b1) @ w2.T + b2 -> [n, H], in the operands' dtype.
    w1 [G*N, H], w2 [H, N], b1 [G*N] and b2 [H] optional. act_group (w8a8 formats, e.g. fp8-block128's
    128): both GEMMs' inputs, x and the activation's output, are quantised per row in groups of that many
    elements and dequantised again first, as the quantised GEMM sees them (moebench.quant.fp8)."""
    if act_group is not None:
        x = fake_quantize_activations(x, act_group)
    h1 = x @ w1.t()
    if b1 is not None:
        h1 = h1 + b1
    h = apply_activation(spec, h1)
    if act_group is not None:
        h = fake_quantize_activations(h, act_group)
    y = h @ w2.t()
    return y if b2 is None else y + b2


def shared_experts(
    spec: MoESpec,
    x: torch.Tensor,
    shared_w1: torch.Tensor,
    shared_w2: torch.Tensor,
    shared_gate: torch.Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The shared experts' part of the layer: sum over s of [sigmoid(x . shared_gate[s]) *] FFN_s(x).

    x [T, H]; shared_w1 [S, G*I_s, H], shared_w2 [S, H, I_s], shared_gate [S, H] (gated specs).
    Each FFN runs in compute_dtype (default: x's dtype; the reference passes fp64, upcasting one shared
    expert at a time); the gate logits are computed in fp32 or wider; the sum comes back in fp32, or
    fp64 when x is fp64.
    """
    dtype = compute_dtype or x.dtype
    acc_dtype = torch.promote_types(dtype, torch.float32)
    xs = x.to(dtype)
    out = torch.zeros(x.shape, dtype=acc_dtype, device=x.device)
    for s in range(spec.shared.count):
        y = expert_ffn(spec, xs, shared_w1[s].to(dtype), shared_w2[s].to(dtype)).to(acc_dtype)
        if spec.shared.gated:
            y = y * torch.sigmoid(x.to(acc_dtype) @ shared_gate[s].to(acc_dtype))[:, None]
        out = out + y
    return out
