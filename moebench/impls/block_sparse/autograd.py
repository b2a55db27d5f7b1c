"""The expert FFN of the block-sparse layer as one autograd.Function (routing stays in torch).

Inputs: x [T, H], topk_weights [T, k] fp32 (from moebench.routing, differentiable), w1, w2.
Forward saves the pre-activation blocks, the activation blocks and the unweighted per-pair
outputs y_pair [T*k, H] fp32; backward computes
  d topk_weights[t, s] = <y_pair[t*k + s], dy[t]>            (flows on through routing's autograd)
  d(pre)  = act'(pre) * (w * dy_sorted . W2)                  SDD on the nonzero blocks
  dx      = sum over slots of d(pre) . W1                     DSD + deterministic combine
  dW2     = h^T . (w * dy_sorted),  dW1 = d(pre)^T . x_sorted  per expert, deterministic
All products accumulate in fp32; gradients come back in the dtypes of their inputs.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from moebench.impls.block_sparse import ops
from moebench.impls.block_sparse.topology import Topology
from moebench.impls.common.combine import combine
from moebench.spec import MoESpec


class BlockSparseExperts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, topk_weights, w1, w2, topo: Topology, spec: MoESpec, configs: dict):
        h, pre = ops.sdd_forward(x, w1, topo, spec, configs["sdd"], save_pre=True)
        w2_as_dense = (w2.stride(0), w2.stride(2), w2.stride(1))  # element (i, n) = w2[e, n, i]
        y_pair = ops.dsd(h, w2, w2_as_dense, topo, spec, "dsd", configs["dsd"])
        out = combine(y_pair, topk_weights, torch.empty_like(x), topo.top_k)
        ctx.save_for_backward(x, topk_weights, w1, w2, h, pre, y_pair)
        ctx.topo, ctx.spec, ctx.configs = topo, spec, configs
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, topk_weights, w1, w2, h, pre, y_pair = ctx.saved_tensors
        topo, spec, configs = ctx.topo, ctx.spec, ctx.configs
        need_x, need_weights, need_w1, need_w2 = ctx.needs_input_grad[:4]
        dy = grad_out.to(x.dtype).contiguous()
        num_tokens, k, hidden = topo.num_tokens, topo.top_k, spec.hidden

        d_topk = None
        if need_weights:
            pairs = y_pair.view(num_tokens, k, hidden)
            d_topk = torch.bmm(pairs, dy.float().view(num_tokens, hidden, 1)).view(num_tokens, k)

        dx = dw1 = dw2 = None
        if need_x or need_w1:
            dpre = ops.sdd_backward(dy, topk_weights, w2, pre, topo, spec, configs["sdd_bwd"])
            if need_x:
                w1_as_dense = (w1.stride(0), w1.stride(1), w1.stride(2))  # element (g*I + i, n) = w1[e, g*I + i, n]
                dx_pair = ops.dsd(dpre, w1, w1_as_dense, topo, spec, "dsd_bwd", configs["dsd_bwd"])
                dx = combine(dx_pair, None, torch.empty_like(x), k)
            if need_w1:
                dw1 = torch.empty_like(w1)
                strides = (dw1.stride(0), dw1.stride(1), dw1.stride(2))
                ops.weight_grad(dpre, x, k, dw1, strides, topo, spec, configs["wgrad"])
        if need_w2:
            dw2 = torch.empty_like(w2)
            strides = (dw2.stride(0), dw2.stride(2), dw2.stride(1))  # element (i, n) -> dw2[e, n, i]
            dy_pairs = ops.scale_rows_per_pair(dy, topk_weights)  # [T*k, H]: w * dy, one row per pair
            ops.weight_grad(h, dy_pairs, 1, dw2, strides, topo, spec, configs["wgrad"])
        return dx, d_topk, dw1, dw2, None, None, None
