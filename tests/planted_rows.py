"""Planted errors that the whole-tensor check misses at large T and the per-row check catches.

Each corrupts a correct output [T, H] the way a kernel bug in a mask, an index or a tail block
would: one row holding its neighbour's output (a wrong index), one 16-column block of one row
left at zero (a column tile not written), and the tail rows past the last full BLOCK-row block
missing their second expert's share (a tail mask that drops a slot). Used by the parity gate's
tests (tests/test_parity_rows.py) and the tuner's (tests/test_tuning_rows.py).
"""

from __future__ import annotations

import torch

from moebench.reference import reference_from_routing
from moebench.routing import Routing, route
from moebench.spec import MoESpec

BLOCK = 16
KINDS = ("row", "columns", "tail")
# bf16, H small so T=16384 is cheap; whole-tensor tolerance 2e-2 while one wrong row moves it ~1/128
SPEC = MoESpec(4, 2, 48, 40, dtype=torch.bfloat16)
BIG_T = 16384
TAIL_T = BIG_T + 5  # the last 5 rows are a tail block


def planted_row(num_tokens: int) -> int:
    return num_tokens // 2 + 3


def corrupt(kind: str, y: torch.Tensor, x: torch.Tensor, weights) -> torch.Tensor:
    """y with the planted error of `kind` (a copy); x and weights are the layer's inputs."""
    y = y.clone()
    t = y.shape[0]
    if t == 0:
        return y
    if kind == "row":
        row = planted_row(t)
        y[row] = y[(row + 1) % t]
    elif kind == "columns":
        y[planted_row(t), 16:32] = 0
    elif kind == "tail":
        start = t - t % BLOCK
        if start < t:
            y[start:] -= _slot_share(x[start:], weights, slot=1).to(y.dtype)
    else:
        raise ValueError(kind)
    return y


def _slot_share(x: torch.Tensor, weights, slot: int) -> torch.Tensor:
    """The contribution of each token's `slot`-th expert to the output [T, H] (fp64)."""
    topk_weights, topk_ids = route(x, weights)
    only = torch.zeros_like(topk_weights)
    only[:, slot] = topk_weights[:, slot]
    return reference_from_routing(x, weights, Routing(only, topk_ids))
