"""The expert FFN: its activations and the FFN itself, one definition used by the reference (in fp64) and
by the torch implementations (in the spec dtype), for routed and shared experts alike; and the few steps
the torch implementations share around it (input or output weighting, biases, shared experts)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moebench.quant.fp8 import E4M3_MAX, fake_quantize_activations, quantize_activations
from moebench.spec import MoESpec
from moebench.stats import SHARED_STAT, record_stat
from moebench.weights import MoEWeights


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
    *,
    round_h1_to: torch.dtype | None = None,
    act_group: int | None = None,
    term_scale: list[torch.Tensor] | None = None,
    requant_slack: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """One expert on x [n, H]: act(x @ w1.T + b1) @ w2.T + b2 -> [n, H], in the operands' dtype.
    w1 [G*N, H], w2 [H, N], b1 [G*N] and b2 [H] optional.

    round_h1_to: the activation sees h1 rounded to that dtype, the product and then the biased sum (values
    only: the gradient stays the exact one), as in an implementation that stores each in a 16-bit compute
    dtype before the activation (the torch ones). Only the
    fp64 reference uses it, for the one place where that choice matters: the SwiGLU clamp's kink, where the
    derivative (0 or 1) depends on which side of the limit the rounded value falls.
    act_group (w8a8 formats, e.g. fp8-block128's 128): both GEMMs' inputs, x and the activation's output,
    are quantised per row in groups of that many elements and dequantised again first, as the quantised
    GEMM sees them (moebench.quant.fp8).
    term_scale: a list that receives the size of each row's terms [n] (`_term_size`): the parity gate's
    scale for rounding errors, which a cancelling sum does not have (with H = 1 one output element is one
    sum of N terms; with I = 1 one activation is one sum of H terms).
    requant_slack (with act_group): a list that receives, per row [n], how far the output may move when an
    implementation's activation lands on the other side of an e4m3 rounding boundary (`_requant_slack`).
    """
    rounded = (lambda t: t + (t.to(round_h1_to).to(t.dtype) - t).detach()) if round_h1_to else (lambda t: t)  # noqa: E731
    if act_group is not None:
        x = fake_quantize_activations(x, act_group)
    h1 = rounded(x @ w1.t())
    if b1 is not None:
        h1 = rounded(h1 + b1)
    h = apply_activation(spec, h1)
    if act_group is not None:
        if requant_slack is not None:
            requant_slack.append(_requant_slack(spec, x.detach(), w1.detach(), h1.detach(), w2.detach(), act_group))
        h = fake_quantize_activations(h, act_group)
    y = h @ w2.t()
    y = y if b2 is None else y + b2
    if term_scale is not None:
        term_scale.append(_term_size(spec, x.detach(), w1.detach(), h1.detach(), h.detach(), w2.detach(), y.detach()))
    return y


def _term_size(spec, x, w1, h1, h, w2, y) -> torch.Tensor:
    """[n]: the size of the terms an expert's output row [n, H] sums, which its rounding errors scale
    with: max(||y||, the root sum of squares of the down projection's terms sqrt(sum_ij h_j^2 W2_ij^2)),
    where each h_j is also taken with its pre-activation floored at half the typical size of the terms
    the up projection summed for it, ||x|| ||W1_j|| / sqrt(H) (a sum that cancels, e.g. with I = 1,
    still rounds on the scale of its terms). Off the cancelling elements the floor changes nothing."""
    typical = torch.outer(torch.linalg.vector_norm(x, dim=1), torch.linalg.vector_norm(w1, dim=1))
    typical = typical / max(x.shape[1], 1) ** 0.5  # [n, G*N]
    floored = torch.where(h1 < 0, -1.0, 1.0) * torch.maximum(h1.abs(), 0.5 * typical)
    h2 = torch.maximum(h**2, apply_activation(spec, floored) ** 2)  # [n, N]
    down = torch.sqrt(h2 @ (w2**2).sum(0))  # [n]
    return torch.maximum(torch.linalg.vector_norm(y, dim=1), down)


# an implementation's first-layer outputs (fp32 accumulation of K terms) may differ from the fp64 ones by
# H1_SIGMAS * sqrt(K) * 2^-24 of the sum of their terms' magnitudes: the typical (root-sum-square) rounding
# error of an fp32 sum, with a margin; the worst case, K * 2^-24, is not reached by random rounding errors
H1_SIGMAS = 4.0


def _requant_slack(spec, x, w1, h1, w2, group: int) -> torch.Tensor:
    """[n]: the root sum of squares, over the activations an implementation may round to the neighbouring e4m3
    code when it quantises them (w8a8: each an fp32 computation of the fp64 value), of the change that makes
    in the output row: one code step times the scale times ||W2[:, j]||. An activation is ambiguous when its
    distance to a rounding boundary, in code units, is within its possible error: the first layer's error
    (H1_SIGMAS sqrt(K) 2^-24 |x| @ |W1|^T, pushed through the activation both ways) over the group's scale, plus its
    share of the scale's own error (the group's amax moves with its element's). Near-tied routing's twin
    (moebench.parity.ties): a correct kernel must not fail on a tie it cannot see."""
    err1 = H1_SIGMAS * x.shape[1] ** 0.5 * 2.0**-24 * (x.abs() @ w1.abs().t())  # [n, G*N]
    h = apply_activation(spec, h1)
    signs = [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] if spec.gated else [(1.0, 1.0), (-1.0, -1.0)]
    half = h1.shape[-1] // 2
    err = torch.zeros_like(h)
    for gate_sign, up_sign in signs:
        shift = torch.cat([gate_sign * err1[:, :half], up_sign * err1[:, half:]], 1) if spec.gated else gate_sign * err1
        err = torch.maximum(err, (apply_activation(spec, h1 + shift) - h).abs())
    n, cols = h.shape
    padded = -(-cols // group) * group
    grouped = lambda t: torch.nn.functional.pad(t, (0, padded - cols)).reshape(n, -1, group)  # noqa: E731
    amax = grouped(h.abs()).amax(-1, keepdim=True)  # [n, groups, 1]
    scale = quantize_activations(h, group)[1].double().unsqueeze(-1)  # the scales the quantisation uses
    u = grouped(h) / scale  # codes before rounding
    scale_rel = grouped(err).amax(-1, keepdim=True) / amax.clamp_min(torch.finfo(torch.float64).tiny)
    band = grouped(err) / scale + u.abs() * scale_rel  # how far u may be off, in code units
    mag = u.abs().clamp_max(E4M3_MAX)
    step = torch.where(mag < 2.0**-6, torch.full_like(mag, 2.0**-9), torch.exp2(torch.floor(torch.log2(mag)) - 3))
    frac = mag / step - torch.floor(mag / step)
    ambiguous = (frac - 0.5).abs() * step <= band
    moved = torch.where(ambiguous, step * scale, torch.zeros_like(step)).reshape(n, padded)[:, :cols]  # [n, N]
    return torch.sqrt((moved**2) @ (w2**2).sum(0))


def shared_gate_weights(x: torch.Tensor, shared_gate: torch.Tensor) -> torch.Tensor:
    """sigmoid(x . shared_gate[s]) for every token and shared expert: [T, S] in fp32 (fp64 for fp64 x)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.sigmoid(x.to(dtype) @ shared_gate.to(dtype).t())


def shared_experts(
    spec: MoESpec,
    x: torch.Tensor,
    shared_w1: torch.Tensor,
    shared_w2: torch.Tensor,
    shared_gate: torch.Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
    *,
    round_h1_to: torch.dtype | None = None,
    term_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """The shared experts' part of the layer: sum over s of [sigmoid(x . shared_gate[s]) *] FFN_s(x).
    term_scale: optional [T] tensor that receives each shared expert's (gated) term size (expert_ffn's).

    x [T, H]; shared_w1 [S, G*I_s, H], shared_w2 [S, H, I_s], shared_gate [S, H] (gated specs).
    Each FFN runs in compute_dtype (default: x's dtype; the reference passes fp64, upcasting one shared
    expert at a time); the gate in fp32 or wider; the sum comes back in fp32, or fp64 when x is fp64.
    """
    dtype = compute_dtype or x.dtype
    acc_dtype = torch.promote_types(dtype, torch.float32)
    xs = x.to(dtype)
    gates = shared_gate_weights(x.to(acc_dtype), shared_gate) if spec.shared.gated else None
    out = torch.zeros(x.shape, dtype=acc_dtype, device=x.device)
    for s in range(spec.shared.count):
        sizes = None if term_scale is None else []
        y = expert_ffn(
            spec, xs, shared_w1[s].to(dtype), shared_w2[s].to(dtype), round_h1_to=round_h1_to, term_scale=sizes
        )
        y = y.to(acc_dtype)
        out = out + (y if gates is None else y * gates[:, s, None])
        if sizes:
            gate = 1 if gates is None else gates[:, s].detach().to(term_scale.dtype)
            term_scale.add_(sizes[0].to(term_scale.dtype) * gate)
    return out


# -- what the torch implementations share around the expert FFN ---------------------------------------------
DENSE_SHARED = "dense GEMM pair per shared expert"  # how add_shared_experts runs them (stat SHARED_STAT)


def expert_inputs(spec: MoESpec, x_rows: torch.Tensor, pair_weights: torch.Tensor) -> torch.Tensor:
    """The rows [n, H] of (token, slot) pairs as their experts see them: times the router weight [n] under
    weight_on='input' (Llama-4; in fp32, rounded once to x's dtype), unchanged otherwise."""
    if spec.router.weight_on != "input":
        return x_rows
    return (x_rows.float() * pair_weights.float()[:, None]).to(x_rows.dtype)


def output_weights(spec: MoESpec, pair_weights: torch.Tensor) -> torch.Tensor:
    """What each pair's expert output is multiplied by: its router weight, or 1 under weight_on='input'."""
    return torch.ones_like(pair_weights) if spec.router.weight_on == "input" else pair_weights


def expert_biases(weights: MoEWeights, experts) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(b1, b2) of `experts` (an index or index tensor), or (None, None) without expert biases."""
    if weights.b1 is None:
        return None, None
    return weights.b1[experts], weights.b2[experts]


def add_shared_experts(acc: torch.Tensor, x: torch.Tensor, weights: MoEWeights) -> torch.Tensor:
    """acc [T, H] fp32 plus the shared experts' output (computed in x's dtype, a dense GEMM pair per shared
    expert, recorded as stat SHARED_STAT for the bench row); acc unchanged without any."""
    if weights.spec.shared.count:
        record_stat(SHARED_STAT, DENSE_SHARED)
        acc += shared_experts(weights.spec, x, weights.shared_w1, weights.shared_w2, weights.shared_gate)
    return acc
