"""The block-sparse MoE layer: route (torch) -> topology (device) -> SDD -> DSD -> combine.

Config (`config=` of the implementation; every key optional, see moebench.kernels.block_sparse.space):
  {"topology": {"block": 128},            # block size B: power of two in [16, 256]
   "sdd": {...}, "dsd": {...},            # forward kernels' tiles
   "sdd_bwd": {...}, "dsd_bwd": {...}, "wgrad": {...}}   # backward kernels' tiles
Unset kernels resolve through moebench.tuning.resolve_config (env pin > tuned cache > default).

Inference (no input needs a gradient) applies the router weight inside the DSD and writes the
combined result straight into `out`; training goes through BlockSparseExperts (autograd).
No host sync anywhere: the layer can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch

from moebench.impls.block_sparse import ops
from moebench.impls.block_sparse.autograd import BlockSparseExperts
from moebench.impls.block_sparse.config import resolve_configs
from moebench.impls.block_sparse.topology import build_topology
from moebench.impls.common.combine import combine
from moebench.routing import Routing, route_unless_given
from moebench.weights import MoEWeights


def block_sparse_moe(
    x: torch.Tensor,
    weights: MoEWeights,
    *,
    out: torch.Tensor | None = None,
    config: dict | None = None,
    routing: Routing | None = None,
) -> torch.Tensor:
    spec = weights.spec
    x = x.contiguous()
    topk_weights, topk_ids = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    topk_weights = topk_weights.contiguous()
    training = torch.is_grad_enabled() and any(t.requires_grad for t in (x, topk_weights, weights.w1, weights.w2))
    configs = resolve_configs(spec, x.shape[0], x.device, config, backward=training)
    topo = build_topology(
        topk_ids, spec.num_experts, spec.intermediate, configs["topology"]["block"], transposed=training
    )

    if training:
        result = BlockSparseExperts.apply(x, topk_weights, weights.w1, weights.w2, topo, spec, configs)
        return result if out is None else out.copy_(result)

    out = torch.empty_like(x) if out is None else out
    h, _ = ops.sdd_forward(x, weights.w1, topo, spec, configs["sdd"], save_pre=False)
    w2 = weights.w2
    w2_as_dense = (w2.stride(0), w2.stride(2), w2.stride(1))  # element (i, n) = w2[e, n, i]
    # weighted per-pair rows in the spec dtype (k == 1: the combine is then just a copy)
    y_pair = ops.dsd(h, w2, w2_as_dense, topo, spec, "dsd", configs["dsd"], topk_weights, out_dtype=x.dtype)
    return combine(y_pair, None, out, spec.top_k)
