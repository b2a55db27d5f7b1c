"""The block-sparse MoE layer: route (torch) -> topology (device) -> SDD -> DSD -> combine.

Config (`config=` of the implementation; every key optional, see moebench.kernels.block_sparse.space):
  {"topology": {"block": 128},            # block size B: power of two in [16, 256]
   "sdd": {...}, "dsd": {...},            # forward kernels' tiles
   "sdd_bwd": {...}, "dsd_bwd": {...}, "wgrad": {...}}   # backward kernels' tiles
Unset kernels resolve through moebench.tuning.resolve_config (env pin > tuned cache > default).

Every spec option: the routing options come from moebench.routing; the shared experts run as appended
experts and the router weights are split by where they apply (moebench.impls.common.pairs); biases,
the clamped SwiGLU and the input-side router weight are in the SDD and DSD epilogues.
Inference (no input needs a gradient) applies the output-side router weight inside the DSD and writes
the combined result straight into `out`; training goes through BlockSparseExperts (autograd).
No host sync anywhere: the layer can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch

from moebench.impls.block_sparse import ops
from moebench.impls.block_sparse.autograd import BlockSparseExperts
from moebench.impls.block_sparse.config import resolve_configs
from moebench.impls.block_sparse.topology import build_topology
from moebench.impls.common.combine import combine
from moebench.impls.common.pairs import layer_pairs
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
    routing = route_unless_given(x, weights, routing)  # [T, k] fp32, [T, k] int64
    tensors = (x, routing.weights, *weights.parameters())
    training = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    pairs = layer_pairs(x, weights, routing, differentiable=training)  # shared experts appended
    in_w, out_w = (None if w is None else w.contiguous() for w in (pairs.in_weights, pairs.out_weights))
    b1, b2 = (None if b is None else b.contiguous() for b in (weights.b1, weights.b2))
    configs = resolve_configs(spec, x.shape[0], x.device, config, backward=training)
    block = configs["topology"]["block"]
    topo = build_topology(pairs.ids, pairs.num_experts, spec.intermediate, block, transposed=training)

    if training:
        result = BlockSparseExperts.apply(
            x, in_w, out_w, weights.w1, weights.w2, b1, b2, pairs.shared_w1, pairs.shared_w2, topo, spec, configs
        )
        return result if out is None else out.copy_(result)

    out = torch.empty_like(x) if out is None else out
    in_flat = None if in_w is None else in_w.reshape(-1)
    h, _ = ops.sdd_forward(
        x, weights.w1, topo, spec, configs["sdd"], save_pre=False, in_w=in_flat, b1=b1, shared_w1=pairs.shared_w1
    )
    w2 = weights.w2
    w2_as_dense = (w2.stride(0), w2.stride(2), w2.stride(1))  # element (i, n) = w2[e, n, i]
    # weighted per-pair rows in the spec dtype (k == 1: the combine is then just a copy)
    out_flat = None if out_w is None else out_w.reshape(-1)
    y_pair = ops.dsd(
        h, w2, w2_as_dense, topo, spec, "dsd", configs["dsd"], out_flat, out_dtype=x.dtype,
        bias=b2, shared_dense=pairs.shared_w2,
    )  # fmt: skip
    return combine(y_pair, None, out, pairs.top_k)
