"""triton_grouped: our Triton grouped-GEMM MoE (one torch.library custom op).

Routing alignment on the device (expert-sorted pairs padded to BLOCK_M, no host sync), grouped
GEMM gate/up with the activation fused, grouped GEMM down with the router weight fused, and a
deterministic combine; a decode path (no sorting, weights streamed once) for small T*k. Kernels and
tuning spaces in moebench.kernels.triton_grouped (alignment and combine in moebench.kernels.common);
host code beside this file: op (the custom op), forward (route, pick a path), ffn (the launches),
config (tunables and config checks). Runs on CPU under the Triton interpreter (TRITON_INTERPRET=1)
and on CUDA.
"""

from __future__ import annotations

import torch

from moebench.impls.triton_grouped.config import FEATURES, FEATURES_NOTE, IMPL  # importing it registers the tunables
from moebench.impls.triton_grouped.op import moe_op
from moebench.impls.triton_grouped.quant import quant_forward
from moebench.registry import any_quant, register
from moebench.weights import MoEWeights


@register(
    IMPL,
    kind="grouped-gemm",
    description="Triton grouped GEMM: device-side align, fused SwiGLU/router-weight epilogues, decode path",
    requires=("triton",),
    dtypes=(torch.float32, torch.float16, torch.bfloat16),
    devices=("cpu", "cuda"),
    backward=False,
    exportable=False,
    graph_safe=True,
    features=FEATURES,
    features_note=FEATURES_NOTE,
    quant=any_quant,
)
def triton_grouped(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None, routing=None) -> torch.Tensor:
    if weights.quant is not None:  # quantised experts: their own kernels (moebench.impls.triton_grouped.quant)
        return quant_forward(x, weights, out=out, config=config, routing=routing)
    return moe_op(x, weights, out=out, config=config, routing=routing)
