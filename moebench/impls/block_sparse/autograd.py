"""The expert FFN of the block-sparse layer as one autograd.Function (routing stays in torch).

Inputs: x [T, H]; per-pair router weights in_w (on the expert's input) and out_w (on its output),
[T, k] fp32 or None (from moebench.impls.common.pairs, differentiable); w1, w2; b1, b2 or None; the
appended shared-expert chunks shared_w1, shared_w2 or None (k and E count them). Forward saves the
pre-activation blocks, the activation blocks and the unweighted per-pair outputs y_pair [T*k, H] fp32
(bias included); backward computes, with u = the input of W1 (x, or in_w * x) and g = out_w * dy (or dy):
  d out_w[t, s] = <y_pair[t*k + s], dy[t]>                    (flows on through the torch routing)
  d(pre)  = act'(pre) * (g_sorted . W2)                       SDD on the nonzero blocks
  dx_pair = d(pre) . W1,  dx = sum over slots of [in_w *] dx_pair   DSD + deterministic combine
  d in_w[t, s] = <dx_pair[t*k + s], x[t]>                     (the first layer is linear in in_w)
  dW2 = h^T . g_sorted, db2 = sum of g rows;  dW1 = d(pre)^T . u_sorted, db1 = column sums of d(pre)
                                                              per expert, deterministic (wgrad)
All products accumulate in fp32; gradients come back in the dtypes of their inputs. The weight gradients
of the shared chunks are rows E.. of one [E', ...] buffer, returned as their own gradient.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from moebench.impls.block_sparse import ops
from moebench.impls.block_sparse.topology import Topology
from moebench.impls.common.combine import combine
from moebench.spec import MoESpec


def _flat(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.reshape(-1)


def _row_dots(rows: torch.Tensor, per_token: torch.Tensor, num_tokens: int, k: int) -> torch.Tensor:
    """[T*k, H] fp32 rows . [T, H] -> [T, k]: <rows[t*k + s], per_token[t]> in fp32."""
    hidden = per_token.shape[1]
    return torch.bmm(rows.view(num_tokens, k, hidden), per_token.float().view(num_tokens, hidden, 1)).view(-1, k)


def _grad_buffer(routed: torch.Tensor, shared: torch.Tensor | None) -> torch.Tensor:
    """A gradient buffer for the routed experts' tensor and, after them, the shared chunks (contiguous)."""
    if shared is None:
        return torch.empty_like(routed)
    return torch.empty(routed.shape[0] + shared.shape[0], *routed.shape[1:], dtype=routed.dtype, device=routed.device)


class BlockSparseExperts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, in_w, out_w, w1, w2, b1, b2, shared_w1, shared_w2, topo: Topology, spec: MoESpec, configs):
        in_flat, out_flat = _flat(in_w), _flat(out_w)
        h, pre = ops.sdd_forward(
            x, w1, topo, spec, configs["sdd"], save_pre=True, in_w=in_flat, b1=b1, shared_w1=shared_w1
        )
        w2_as_dense = (w2.stride(0), w2.stride(2), w2.stride(1))  # element (i, n) = w2[e, n, i]
        y_pair = ops.dsd(h, w2, w2_as_dense, topo, spec, "dsd", configs["dsd"], bias=b2, shared_dense=shared_w2)
        out = combine(y_pair, out_flat, torch.empty_like(x), topo.top_k)
        ctx.save_for_backward(x, in_w, out_w, w1, w2, shared_w1, shared_w2, h, pre, y_pair)
        ctx.topo, ctx.spec, ctx.configs, ctx.has_bias = topo, spec, configs, b1 is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, in_w, out_w, w1, w2, shared_w1, shared_w2, h, pre, y_pair = ctx.saved_tensors
        topo, spec, configs = ctx.topo, ctx.spec, ctx.configs
        need_x, need_in, need_out, need_w1, need_w2, need_b1, need_b2, need_s1, need_s2 = ctx.needs_input_grad[:9]
        dy = grad_out.to(x.dtype).contiguous()
        num_tokens, k = topo.num_tokens, topo.top_k
        in_flat, out_flat = _flat(in_w), _flat(out_w)
        grads = dict.fromkeys(("x", "in_w", "out_w", "w1", "w2", "b1", "b2", "shared_w1", "shared_w2"))

        if need_out:
            grads["out_w"] = _row_dots(y_pair, dy, num_tokens, k)
        if need_x or need_in or need_w1 or need_b1 or need_s1:
            dpre = ops.sdd_backward(dy, out_flat, w2, pre, topo, spec, configs["sdd_bwd"], shared_w2)
            if need_x or need_in:
                w1_as_dense = (w1.stride(0), w1.stride(1), w1.stride(2))  # element (g*I + i, n) = w1[e, g*I + i, n]
                dx_pair = ops.dsd(
                    dpre, w1, w1_as_dense, topo, spec, "dsd_bwd", configs["dsd_bwd"], shared_dense=shared_w1
                )
                if need_x:
                    grads["x"] = combine(dx_pair, in_flat, torch.empty_like(x), k)
                if need_in:
                    grads["in_w"] = _row_dots(dx_pair, x, num_tokens, k)
            if need_w1 or need_b1 or need_s1:
                dw1 = _grad_buffer(w1, shared_w1)
                db1 = dw1.new_empty(dw1.shape[:2]) if ctx.has_bias else None
                strides = (dw1.stride(0), dw1.stride(1), dw1.stride(2))
                first_input, rows_per = (x, k) if in_w is None else (ops.scale_rows_per_pair(x, in_w), 1)
                ops.weight_grad(dpre, first_input, rows_per, dw1, strides, topo, spec, configs["wgrad"],
                                bias_grad=db1, bias_from="sparse")  # fmt: skip
                grads.update(_split(dw1, w1, "w1"), **({} if db1 is None else {"b1": db1[: w1.shape[0]]}))
        if need_w2 or need_b2 or need_s2:
            dw2 = _grad_buffer(w2, shared_w2)
            db2 = dw2.new_empty(dw2.shape[0], spec.hidden) if ctx.has_bias else None
            strides = (dw2.stride(0), dw2.stride(2), dw2.stride(1))  # element (i, n) -> dw2[e, n, i]
            # g = w * dy, one row per pair; dy itself (a row per token) when the weight is on the input
            g, rows_per = (dy, k) if out_w is None else (ops.scale_rows_per_pair(dy, out_w), 1)
            ops.weight_grad(h, g, rows_per, dw2, strides, topo, spec, configs["wgrad"],
                            bias_grad=db2, bias_from="dense")  # fmt: skip
            grads.update(_split(dw2, w2, "w2"), **({} if db2 is None else {"b2": db2[: w2.shape[0]]}))
        return (*grads.values(), None, None, None)


def _split(buffer: torch.Tensor, routed: torch.Tensor, name: str) -> dict:
    """{name: the routed experts' rows, shared_<name>: the shared chunks' rows (when any)}."""
    parts = {name: buffer[: routed.shape[0]]}
    if buffer.shape[0] > routed.shape[0]:
        parts[f"shared_{name}"] = buffer[routed.shape[0] :]
    return parts
