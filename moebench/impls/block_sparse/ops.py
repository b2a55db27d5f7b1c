"""Launchers of the block-sparse kernels: allocate outputs, clamp tiles to the block, launch.

Every launcher takes the resolved config of its kernel ({BLOCK_M, BLOCK_N, BLOCK_K, num_warps,
num_stages}); tiles along a block dimension are clamped to the block size, tiles along the hidden
size to its next power of two (both at least 16, tl.dot's minimum). Grids use the topology's
host-side bounds; programs past the used part exit at once. Nothing here reads device values.
Every launch passes the interpreter workaround flags: `dot_flags` of the operand dtype and
`store_flags` of the dtype the kernel stores (see moebench.kernels.common.interpreter).

Expert options: router weights on the input (`in_w`) or the output (`out_w`), biases, the clamped SwiGLU
(`activation_constexprs`) and the appended shared-expert chunks (`shared_*`, experts >= spec.num_experts;
the topology counts them) are optional arguments; a tensor an option leaves unread is passed as a stand-in
so the kernels' signatures stay fixed.
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.impls.block_sparse.topology import Topology
from moebench.kernels.block_sparse.dsd import dsd_kernel
from moebench.kernels.block_sparse.sdd import sdd_backward_kernel, sdd_forward_kernel
from moebench.kernels.block_sparse.space import TILE_AXES
from moebench.kernels.block_sparse.wgrad import BIAS_GRAD_CODES, sparse_t_dense_kernel
from moebench.kernels.common.activation import activation_constexprs
from moebench.kernels.common.interpreter import dot_flags, store_flags
from moebench.kernels.common.pow2 import next_pow2
from moebench.spec import MoESpec


def launch_params(kernel: str, cfg: dict, block: int, hidden: int) -> dict:
    """Config -> constexpr tiles (clamped) and launch options, validated."""
    caps = {"block": block, "hidden": max(16, next_pow2(hidden))}
    params = {}
    for key, axis in TILE_AXES[kernel].items():
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 16 or value & (value - 1):
            raise MoEInputError(f"config[{kernel!r}][{key!r}]: expected a power of two >= 16, got {value!r}")
        params[key] = min(value, caps[axis])
    for key, default in (("num_warps", 4), ("num_stages", 2)):
        value = cfg.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MoEInputError(f"config[{kernel!r}][{key!r}]: expected a positive int, got {value!r}")
        params[key] = value
    return params


def sdd_forward(
    x: torch.Tensor,
    w1: torch.Tensor,
    topo: Topology,
    spec: MoESpec,
    cfg: dict,
    *,
    save_pre: bool,
    in_w: torch.Tensor | None = None,
    b1: torch.Tensor | None = None,
    shared_w1: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x [T, H] (contiguous rows) -> (activation blocks [max_blocks, B, B],
    pre-activation blocks [G, max_blocks, B, B] or None). in_w [T*k] fp32: router weight on the input;
    b1 [E, G*I] (contiguous); shared_w1 [S', G*I, H] with w1's inner strides."""
    b, g = topo.block, 2 if spec.gated else 1
    h = torch.empty(topo.max_blocks, b, b, dtype=x.dtype, device=x.device)
    pre = torch.empty(g, topo.max_blocks, b, b, dtype=x.dtype, device=x.device) if save_pre else None
    if topo.max_blocks == 0:
        return h, pre
    p = launch_params("sdd", cfg, b, spec.hidden)
    grid = (topo.max_blocks * (b // p["BLOCK_M"]) * (b // p["BLOCK_N"]),)
    pre_gate = pre[0] if save_pre else h
    pre_up = pre[g - 1] if save_pre else h
    b1_arg, sw1 = _or(b1, w1), _or(shared_w1, w1)
    sdd_forward_kernel[grid](
        x, w1, topo.row_to_pair, topo.block_rows, topo.block_cols, h, pre_gate, pre_up, _or(in_w, b1_arg), b1_arg, sw1,
        spec.hidden, spec.intermediate, topo.top_k, topo.blocks_per_row, spec.num_experts,
        x.stride(0), w1.stride(0), w1.stride(1), w1.stride(2), spec.intermediate * w1.stride(1),
        b1_arg.stride(0), sw1.stride(0),
        BLOCK=b, GATED=spec.gated, **activation_constexprs(spec), SCALE_INPUT=in_w is not None,
        HAS_BIAS=b1 is not None, HAS_SHARED=shared_w1 is not None, SAVE_PRE=save_pre,
        **p, **dot_flags(x.dtype), **store_flags(h.dtype),
    )  # fmt: skip
    return h, pre


def sdd_backward(
    dy: torch.Tensor, out_w: torch.Tensor | None, w2: torch.Tensor, pre: torch.Tensor, topo: Topology,
    spec: MoESpec, cfg: dict, shared_w2: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """dy [T, H] -> d(pre-activation) blocks [G, max_blocks, B, B] (same layout as `pre`); out_w [T*k] fp32:
    router weight on the output (None: none); shared_w2 [S', H, I] with w2's inner strides."""
    b, g = topo.block, pre.shape[0]
    dpre = torch.empty_like(pre)
    if topo.max_blocks == 0:
        return dpre
    p = launch_params("sdd_bwd", cfg, b, spec.hidden)
    grid = (topo.max_blocks * (b // p["BLOCK_M"]) * (b // p["BLOCK_N"]),)
    sw2 = _or(shared_w2, w2)
    sdd_backward_kernel[grid](
        dy, _or(out_w, dy), w2, sw2, topo.row_to_pair, topo.block_rows, topo.block_cols,
        pre[0], pre[g - 1], dpre[0], dpre[g - 1],
        spec.hidden, spec.intermediate, topo.top_k, topo.blocks_per_row, spec.num_experts,
        dy.stride(0), w2.stride(0), w2.stride(1), w2.stride(2), sw2.stride(0),
        BLOCK=b, GATED=spec.gated, **activation_constexprs(spec), SCALE_OUTPUT=out_w is not None,
        HAS_SHARED=shared_w2 is not None, **p, **dot_flags(dy.dtype), **store_flags(dpre.dtype),
    )  # fmt: skip
    return dpre


def _or(t: torch.Tensor | None, stand_in: torch.Tensor) -> torch.Tensor:
    """t, or a stand-in for a kernel argument its constexpr switch leaves unread."""
    return stand_in if t is None else t


def dsd(
    blocks: torch.Tensor,
    dense: torch.Tensor,
    dense_strides: tuple[int, int, int],
    topo: Topology,
    spec: MoESpec,
    kernel: str,
    cfg: dict,
    topk_weights: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.float32,
    *,
    bias: torch.Tensor | None = None,
    shared_dense: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block-sparse blocks [G, max_blocks, B, B] (or [max_blocks, B, B]) times a per-expert dense
    operand -> per-pair rows [T*k, H] in out_dtype (fp32 accumulation), plus the expert's bias [E, H] when
    given, scaled by the router weight when given.

    dense_strides = (expert, i, n) strides of the dense operand's element (i in I, n in H); shared_dense: the
    appended shared-expert chunks of the dense operand, with its strides but the first.
    """
    slices = blocks if blocks.dim() == 4 else blocks.unsqueeze(0)
    num_pairs = topo.num_tokens * topo.top_k
    out = torch.empty(num_pairs, spec.hidden, dtype=out_dtype, device=blocks.device)
    if topo.max_blocks == 0:
        return out
    b = topo.block
    p = launch_params(kernel, cfg, b, spec.hidden)
    grid = (topo.max_row_blocks * (b // p["BLOCK_M"]), triton_cdiv(spec.hidden, p["BLOCK_N"]))
    weight_arg = topk_weights if topk_weights is not None else out
    bias_arg, shared_arg = _or(bias, dense), _or(shared_dense, dense)
    dsd_kernel[grid](
        slices, dense, topo.row_to_pair, topo.row_offsets, topo.block_cols, weight_arg, out, bias_arg, shared_arg,
        spec.hidden, spec.intermediate, topo.blocks_per_row, spec.num_experts, slices.stride(0),
        *dense_strides, out.stride(0), bias_arg.stride(0), shared_arg.stride(0),
        NUM_SLICES=slices.shape[0], APPLY_WEIGHT=topk_weights is not None, HAS_BIAS=bias is not None,
        HAS_SHARED=shared_dense is not None, BLOCK=b, **p, **dot_flags(blocks.dtype), **store_flags(out.dtype),
    )  # fmt: skip
    return out


def weight_grad(
    blocks: torch.Tensor,
    dense: torch.Tensor,
    rows_per_dense: int,
    out: torch.Tensor,
    out_strides: tuple[int, int, int],
    topo: Topology,
    spec: MoESpec,
    cfg: dict,
    *,
    bias_grad: torch.Tensor | None = None,
    bias_from: str | None = None,
) -> torch.Tensor:
    """out[e, g*I + i, n] (addressed by out_strides = (expert, i, n)) = sum over expert e's rows r
    of S_g[r, i] * dense[pair(r) // rows_per_dense, n]: rows_per_dense = k when dense has a row per
    token, 1 when it has a row per pair. Every element is written (zeros for idle experts). With
    `bias_grad` ([E, G*I] or [E, N], contiguous rows) and bias_from "sparse" (sum of S over the expert's rows)
    or "dense" (sum of its dense rows), that bias gradient too. E counts every expert of the topology."""
    slices = blocks if blocks.dim() == 4 else blocks.unsqueeze(0)
    if topo.max_blocks == 0:
        if bias_grad is not None:
            bias_grad.zero_()
        return out.zero_()
    if not topo.has_transposed:
        raise ValueError("weight_grad needs the transposed index: build_topology(..., transposed=True)")
    b = topo.block
    p = launch_params("wgrad", cfg, b, spec.hidden)
    grid = (topo.num_column_blocks * (b // p["BLOCK_M"]), triton_cdiv(spec.hidden, p["BLOCK_N"]), slices.shape[0])
    bias_arg = _or(bias_grad, out)
    sparse_t_dense_kernel[grid](
        slices, dense, topo.row_to_pair, topo.column_offsets_t, topo.block_index_t, topo.block_rows_t, out, bias_arg,
        spec.hidden, spec.intermediate, rows_per_dense, topo.blocks_per_row, slices.stride(0),
        dense.stride(0), *out_strides, bias_arg.stride(0),
        BIAS_GRAD=BIAS_GRAD_CODES[bias_from if bias_grad is not None else None],
        BLOCK=b, **p, **dot_flags(blocks.dtype), **store_flags(out.dtype),
    )  # fmt: skip
    return out


def scale_rows_per_pair(dy: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
    """[T, H] x [T, k] -> [T*k, H] in dy's dtype: row t*k + s = w[t, s] * dy[t] (product in fp32)."""
    scaled = dy.float().unsqueeze(1) * topk_weights.unsqueeze(-1)
    return scaled.to(dy.dtype).reshape(-1, dy.shape[1])


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
