"""The activation of the expert FFN, for every moebench kernel: one table of codes, one forward
epilogue and its backward, on fp32 tiles.

Activations are identified by a constexpr code so one kernel compiles per activation; launchers
pass ACTIVATION=ACTIVATION_CODES[spec.activation]. swiglu is the only gated one: it reads a gate
tile and an up tile; gelu (exact, erf) and relu read the gate tile only (the whole first-layer
output of a non-gated FFN).

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


@triton.jit
def activation_forward(gate, up, ACTIVATION: tl.constexpr):
    """gate, up: [BM, BN] fp32 pre-activations (up ignored unless swiglu) -> [BM, BN] fp32."""
    if ACTIVATION == ACT_SWIGLU:
        h = gate / (1.0 + tl.exp(-gate)) * up
    elif ACTIVATION == ACT_GELU:
        h = 0.5 * gate * (1.0 + tl.erf(gate * _INV_SQRT2))
    else:
        h = tl.maximum(gate, 0.0)
    return h


@triton.jit
def activation_backward(gate, up, dh, ACTIVATION: tl.constexpr):
    """Gradients of the pre-activations from dh = d(activation output), all [BM, BN] fp32.

    Returns (d_gate, d_up); d_up is meaningful only for swiglu. relu's derivative at 0 is 0
    (as torch's relu backward).
    """
    if ACTIVATION == ACT_SWIGLU:
        sig = 1.0 / (1.0 + tl.exp(-gate))
        d_gate = dh * up * (sig * (1.0 + gate * (1.0 - sig)))
        d_up = dh * (gate * sig)
    elif ACTIVATION == ACT_GELU:
        cdf = 0.5 * (1.0 + tl.erf(gate * _INV_SQRT2))
        pdf = tl.exp(-0.5 * gate * gate) * _INV_SQRT_2PI
        d_gate = dh * (cdf + gate * pdf)
        d_up = d_gate
    else:
        d_gate = tl.where(gate > 0.0, dh, 0.0)
        d_up = d_gate
    return d_gate, d_up
