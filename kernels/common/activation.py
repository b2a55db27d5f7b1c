"""The activation of the expert FFN, for every moebench kernel: one table of codes, one forward
epilogue and its backward, on fp32 tiles.

Activations are identified by a constexpr code so one kernel compiles per activation; launchers
pass `activation_constexprs(spec)` (ACTIVATION=ACTIVATION_CODES[spec.activation] and the SwiGLU
options). swiglu is the only gated one: it reads a gate tile and an up tile; gelu (exact, erf) and
relu read the gate tile only (the whole first-layer output of a non-gated FFN).

SwiGLU options (moebench.layer_options.ExpertSpec; gpt-oss: alpha 1.702, limit 7, up offset 1), all
constexpr, defaults = the plain SwiGLU, which compiles to exactly the code it had before the options:
    gate' = min(gate, SWIGLU_LIMIT), up' = clamp(up, -SWIGLU_LIMIT, SWIGLU_LIMIT)   (SWIGLU_LIMIT > 0)
    h = gate' * sigmoid(SWIGLU_ALPHA * gate') * (up' + SWIGLU_UP_OFFSET)
SWIGLU_LIMIT = 0.0 means no clamp (a spec's limit is > 0). The backward follows torch.clamp's autograd:
the gradient passes where the input is inside the closed range (the boundary included), zero outside.

The sigmoid is written out (1 / (1 + exp(-x)), what tl.sigmoid computes): tl helpers are @jit
functions, and every nested @jit call costs the Triton interpreter milliseconds (it re-patches
triton.language).
"""

import triton
import triton.language as tl

# spec.activation -> the kernels' ACTIVATION constexpr (host code reads this table)
ACTIVATION_CODES = {"swiglu": 0, "gelu": 1, "relu": 2}
ACT_SWIGLU: tl.constexpr = tl.constexpr(ACTIVATION_CODES["swiglu"])
ACT_GELU: tl.constexpr = tl.constexpr(ACTIVATION_CODES["gelu"])
ACT_RELU: tl.constexpr = tl.constexpr(ACTIVATION_CODES["relu"])

_INV_SQRT2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


def activation_constexprs(spec) -> dict:
    """The activation constexprs of every kernel that applies the activation or its backward, for a
    moebench.spec.MoESpec: ACTIVATION and the SwiGLU options (plain values unless the spec sets them)."""
    opts = spec.expert
    return {
        "ACTIVATION": ACTIVATION_CODES[spec.activation],
        "SWIGLU_ALPHA": opts.swiglu_alpha,
        "SWIGLU_LIMIT": 0.0 if opts.swiglu_limit is None else opts.swiglu_limit,
        "SWIGLU_UP_OFFSET": opts.swiglu_up_offset,
    }


@triton.jit
def activation_forward(
    gate,
    up,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr = 1.0,
    SWIGLU_LIMIT: tl.constexpr = 0.0,
    SWIGLU_UP_OFFSET: tl.constexpr = 0.0,
):
    """gate, up: [BM, BN] fp32 pre-activations (up ignored unless swiglu) -> [BM, BN] fp32."""
    if ACTIVATION == ACT_SWIGLU:
        if SWIGLU_LIMIT > 0:
            gate = tl.minimum(gate, SWIGLU_LIMIT)
            up = tl.minimum(tl.maximum(up, -SWIGLU_LIMIT), SWIGLU_LIMIT)
        if SWIGLU_UP_OFFSET != 0:
            up = up + SWIGLU_UP_OFFSET
        if SWIGLU_ALPHA != 1:
            h = gate / (1.0 + tl.exp(-SWIGLU_ALPHA * gate)) * up
        else:
            h = gate / (1.0 + tl.exp(-gate)) * up
    elif ACTIVATION == ACT_GELU:
        h = 0.5 * gate * (1.0 + tl.erf(gate * _INV_SQRT2))
    else:
        h = tl.maximum(gate, 0.0)
    return h


@triton.jit
def activation_backward(
    gate,
    up,
    dh,
    ACTIVATION: tl.constexpr,
    SWIGLU_ALPHA: tl.constexpr = 1.0,
    SWIGLU_LIMIT: tl.constexpr = 0.0,
    SWIGLU_UP_OFFSET: tl.constexpr = 0.0,
):
    """Gradients of the pre-activations from dh = d(activation output), all [BM, BN] fp32.

    Returns (d_gate, d_up); d_up is meaningful only for swiglu. relu's derivative at 0 is 0
    (as torch's relu backward); the SwiGLU clamp passes the gradient on its closed range (as torch.clamp).
    """
    if ACTIVATION == ACT_SWIGLU:
        if SWIGLU_LIMIT > 0:
            dh_gate = tl.where(gate <= SWIGLU_LIMIT, dh, 0.0)
            dh_up = tl.where((up >= -SWIGLU_LIMIT) & (up <= SWIGLU_LIMIT), dh, 0.0)
            gate = tl.minimum(gate, SWIGLU_LIMIT)
            up = tl.minimum(tl.maximum(up, -SWIGLU_LIMIT), SWIGLU_LIMIT)
        else:
            dh_gate = dh
            dh_up = dh
        if SWIGLU_UP_OFFSET != 0:
            up = up + SWIGLU_UP_OFFSET
        if SWIGLU_ALPHA != 1:
            sig = 1.0 / (1.0 + tl.exp(-SWIGLU_ALPHA * gate))
            d_gate = dh_gate * up * (sig * (1.0 + SWIGLU_ALPHA * gate * (1.0 - sig)))
        else:
            sig = 1.0 / (1.0 + tl.exp(-gate))
            d_gate = dh_gate * up * (sig * (1.0 + gate * (1.0 - sig)))
        d_up = dh_up * (gate * sig)
    elif ACTIVATION == ACT_GELU:
        cdf = 0.5 * (1.0 + tl.erf(gate * _INV_SQRT2))
        pdf = tl.exp(-0.5 * gate * gate) * _INV_SQRT_2PI
        d_gate = dh * (cdf + gate * pdf)
        d_up = d_gate
    else:
        d_gate = tl.where(gate > 0.0, dh, 0.0)
        d_up = d_gate
    return d_gate, d_up
