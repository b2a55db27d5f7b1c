"""Parity tolerances: the one table, keyed by dtype, and the constants the gate's checks use.

An output passes when every element is finite and written, its relative L2 error against the fp64
reference, ||out - ref|| / ||ref|| (each row's norm in ||ref|| floored at CANCEL_FLOOR * s_t), is at
most REL_L2_TOLERANCE (outputs of at least MIN_AVERAGED elements), and every token row's error
||out_t - ref_t|| / max(s_t, ROW_FLOOR * rms_t ||ref_t||) is at most ROW_TOLERANCE, where s_t is the
size of the terms the row sums: sum over the token's experts (shared ones too) of |routing weight| *
max(||expert output row||, sqrt(sum_ij h_j^2 W2_ij^2)), the latter the root sum of squares of the down
projection's terms with each activation's input floored at half the typical size of the up projection's
terms (moebench.activations._term_size): neither cancels where a single element does (H = 1, I = 1)
(>= ||ref_t||; ||ref_t|| where the reference gives no s_t).
Why these values: fp32 kernels run full fp32 (no TF32) so their error is ~1e-6; fp16/bf16 round
the inputs, the I-wide activation and the output to 11/8 significant bits (unit roundoff 4.9e-4 /
3.9e-3), which gives rel. L2 errors of ~1e-3 (fp16) and ~5e-3 (bf16); the table leaves ~3x margin.
The whole-tensor error hides a few wrong rows among many (one wrong row in 4096 is 1/64 of the
norm), hence the row check. Rounding errors are relative to the terms, not to their sum: with H=1
and k=7, a bf16 row whose experts cancel showed 0.28 of its own norm for a correct implementation,
3e-3 of s_t. Limits: the worst rows of correct implementations over the property test's random
problems (README, "Parity gate") with margin; the planted wrong row, column block and dropped expert
share (tests/planted_rows.py) show 0.82, 0.36 and 0.59.
Formats that quantise activations (fp8-block128): a row's error may first exceed these by its requantisation
slack, the output change of the activations lying on an e4m3 rounding boundary (moebench.activations.
_requant_slack), which a correct fp32 implementation may round either way (tests/test_requant_ties.py).
"""

from __future__ import annotations

import torch

# dtype -> max relative L2 error of the output against the fp64 reference
REL_L2_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 1e-4,
    torch.float16: 4e-3,
    torch.bfloat16: 2e-2,
}

# dtype -> max relative L2 error of any one token row of the output
ROW_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-3,
    torch.float16: 2e-2,
    torch.bfloat16: 8e-2,
}

# A row's error is relative to s_t, or to this fraction of the root-mean-square row norm of the
# reference when s_t is smaller. Rounding errors come from intermediates on the scale of
# typical rows (expert outputs before the weighted sum, activations), not from the row's own value,
# so a row that is near zero (small router weights, cancelling experts, dropped pairs) would show a
# huge relative error for correct rounding. Relative to the RMS row norm the floor is scale-free
# (scaling x and the weights scales both sides), and a row that should be ~0 but holds a typical
# row's worth of garbage still shows an error of ~1 / ROW_FLOOR.
ROW_FLOOR = 0.1

# The whole-tensor error ||out - ref|| / ||ref|| floors each row's share of ||ref|| at this fraction of
# s_t (the size of the terms the row sums). Same reason as the row check: a row whose experts cancel
# rounds on the scale of its terms. With a large H a row's norm is about s_t / sqrt(k) >= 0.35 s_t
# (k <= 8), so the floor changes nothing there; with few elements (H = 1, T = 1) the whole tensor is
# one cancelling sum: fp16, E=16 k=7 H=1 I=16, T=1 showed 4.3e-3 of ||ref|| (1.6e-4 of s_t, 27x
# cancellation) for every torch implementation alike (property test seed 1427378311, case 190).
CANCEL_FLOOR = 0.25

# The whole-tensor error is an average over elements; an output with fewer than this many (T = 1 with
# H = 1 is one element) is judged by the row check alone, whose scale is the terms' size. bf16, E=36 k=2
# H=1 I=75 input-weighted SwiGLU, T=1: 1.1e-2 of s_t (2.9 unit roundoffs: the input's rounding counts
# twice through the product) but 3.2e-2 of the output's own value (property test seed 16, case 167).
MIN_AVERAGED = 64

# Near-tied routing (moebench.parity.ties): experts a, b of token x tie when their fp32 logits differ by at
# most TIE_LOGIT_RTOL * ||x|| * max(||router_a||, ||router_b||), or their fp32 scores by at most
# TIE_SCORE_ULPS units in the last place. 2^-20 is 16 fp32 unit roundoffs of the dot product's term
# magnitude: the largest difference measured between two fp32 summation orders (torch's CPU mm and
# ONNX Runtime's MatMul, H = 32..7168) was 1.5e-7 of sum |x_h r_h| (<= ||x|| ||r||), ~6x below it.
TIE_LOGIT_RTOL = 2.0**-20
TIE_SCORE_ULPS = 4

# gradients accumulate over more terms (sums over tokens for weight gradients)
GRAD_REL_L2_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 2e-4,
    torch.float16: 8e-3,
    torch.bfloat16: 4e-2,
}


def tolerance(dtype: torch.dtype, *, grad: bool = False) -> float:
    table = GRAD_REL_L2_TOLERANCE if grad else REL_L2_TOLERANCE
    if dtype not in table:
        raise KeyError(f"no tolerance for dtype {dtype}")
    return table[dtype]


def row_tolerance(dtype: torch.dtype) -> float:
    if dtype not in ROW_TOLERANCE:
        raise KeyError(f"no row tolerance for dtype {dtype}")
    return ROW_TOLERANCE[dtype]
