"""Launch the two FFN pipelines of `triton_grouped` on already-routed pairs.

grouped: align (4 small kernels) -> grouped GEMM gate/up + activation -> grouped GEMM down x
         router weight -> combine. For any T; tiles of BLOCK_M rows of one expert.
decode:  decode GEMM gate/up -> decode GEMM down -> combine. No alignment; for small T*k.

Both run the pairs of moebench.impls.common.pairs (routed pairs, then the shared experts as appended
experts: k and E below count them), with the expert options in the kernels' epilogues (router weight on
the input or the output, b1, b2, clamped SwiGLU), write per-pair rows y [T*k, H] (compute dtype, the
epilogue applied in fp32 before rounding) and combine them in slot order into `out`; with k == 1 the down
kernels write `out` directly.
No host synchronisation anywhere (grids come from host-known bounds), so the whole layer can be
captured in a CUDA graph. Kernels take x's strides as given (no copy for a non-contiguous x) and
the weights' strides; h, y and out must have unit column stride (we allocate h and y; out is
checked by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moebench.impls.common.align import align_pairs
from moebench.impls.common.combine import combine
from moebench.impls.common.pairs import LayerPairs
from moebench.kernels.common.activation import activation_constexprs
from moebench.kernels.common.interpreter import dot_flags, store_flags
from moebench.kernels.triton_grouped import decode as decode_kernels
from moebench.kernels.triton_grouped import gemm
from moebench.spec import MoESpec
from moebench.weights import MoEWeights


def _launch_opts(cfg: dict) -> dict:
    return {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}


def run_ffn(
    path: str,  # "grouped" or "decode"
    x: torch.Tensor,  # [T, H]
    weights: MoEWeights,  # w1 [E, G*I, H], w2 [E, H, I], b1 [E, G*I] and b2 [E, H] when the spec has biases
    pairs: LayerPairs,  # ids [T, k] and router weights, with the shared experts appended
    out: torch.Tensor,  # [T, H], unit column stride
    first_cfg: dict,  # gate_up or decode_gate_up
    second_cfg: dict,  # down or decode_down
) -> torch.Tensor:
    """The FFN of `path` on routed pairs: two GEMMs into per-pair rows, then the combine into `out`."""
    top_k = pairs.top_k
    num_pairs = x.shape[0] * top_k
    # where the down kernels write per-pair rows: `out` itself when k == 1, else a scratch buffer
    y = out if top_k == 1 else torch.empty(num_pairs, out.shape[1], dtype=out.dtype, device=out.device)
    gemms = _grouped_gemms if path == "grouped" else _decode_gemms
    gemms(x, y, _operands(x, weights, pairs), pairs, weights.spec, first_cfg, second_cfg)
    combine(y, None, out, top_k)
    return out


@dataclass(frozen=True)
class _Operands:
    """The GEMMs' tensors and epilogue switches. A tensor a switch leaves unread is a stand-in (w1 / w2, or b1
    / b2 for the router weights), so the kernels' signatures stay fixed."""

    w1: torch.Tensor  # [E, G*I, H]
    w2: torch.Tensor  # [E, H, I]
    in_w: torch.Tensor  # [P] fp32: router weight on the expert's input (SCALE_INPUT)
    out_w: torch.Tensor  # [P] fp32: router weight on the expert's output (SCALE_OUTPUT)
    b1: torch.Tensor  # [E, G*I] (HAS_BIAS)
    b2: torch.Tensor  # [E, H] (HAS_BIAS)
    shared_w1: torch.Tensor  # [S', G*I, H], w1's inner strides (HAS_SHARED)
    shared_w2: torch.Tensor  # [S', H, I], w2's inner strides (HAS_SHARED)
    gate_up_flags: dict  # constexprs of the first layer's epilogue
    down_flags: dict  # constexprs of the second layer's epilogue
    flags: dict  # interpreter workaround flags


def _operands(x: torch.Tensor, weights: MoEWeights, pairs: LayerPairs) -> _Operands:
    spec, w1, w2 = weights.spec, weights.w1, weights.w2
    b1 = w1 if weights.b1 is None else weights.b1.contiguous()
    b2 = w2 if weights.b2 is None else weights.b2.contiguous()
    in_w = b1 if pairs.in_weights is None else pairs.in_weights.reshape(-1).contiguous()
    out_w = b2 if pairs.out_weights is None else pairs.out_weights.reshape(-1).contiguous()
    options = {"HAS_BIAS": weights.b1 is not None, "HAS_SHARED": pairs.has_shared}
    return _Operands(
        w1=w1,
        w2=w2,
        in_w=in_w,
        out_w=out_w,
        b1=b1,
        b2=b2,
        shared_w1=w1 if pairs.shared_w1 is None else pairs.shared_w1,
        shared_w2=w2 if pairs.shared_w2 is None else pairs.shared_w2,
        gate_up_flags={**activation_constexprs(spec), "SCALE_INPUT": pairs.in_weights is not None, **options},
        down_flags={"SCALE_OUTPUT": pairs.out_weights is not None, **options},
        flags={**dot_flags(x.dtype), **store_flags(x.dtype)},
    )


def _grouped_gemms(x, y, ops: _Operands, pairs: LayerPairs, spec: MoESpec, gate_up_cfg: dict, down_cfg: dict):
    """align -> grouped GEMM gate/up + epilogue -> grouped GEMM down + epilogue, into y."""
    num_pairs, top_k, routed = x.shape[0] * pairs.top_k, pairs.top_k, pairs.routed_experts
    hidden, inter = spec.hidden, spec.intermediate
    w1, w2, b1, b2, sw1, sw2 = ops.w1, ops.w2, ops.b1, ops.b2, ops.shared_w1, ops.shared_w2
    align_m = gate_up_cfg["BLOCK_M"]
    aligned = align_pairs(pairs.ids, pairs.num_experts, align_m)

    h = torch.empty(aligned.max_blocks * align_m, inter, dtype=x.dtype, device=x.device)
    bn, bk = gate_up_cfg["BLOCK_N"], gate_up_cfg["BLOCK_K"]
    grid = (aligned.max_blocks * -(-inter // bn),)
    gemm.grouped_gate_up_kernel[grid](
        x, w1, h, aligned.sorted_pairs, aligned.block_expert, aligned.num_blocks, ops.in_w, b1, sw1,
        num_pairs, top_k, hidden, inter, aligned.max_blocks, routed,
        x.stride(0), x.stride(1), w1.stride(0), w1.stride(1), w1.stride(2), h.stride(0), b1.stride(0), sw1.stride(0),
        **ops.gate_up_flags, BLOCK_M=align_m, BLOCK_N=bn, BLOCK_K=bk,
        GROUP_M=gate_up_cfg["GROUP_M"], EVEN_K=hidden % bk == 0, **ops.flags, **_launch_opts(gate_up_cfg),
    )  # fmt: skip

    bm, bn, bk = down_cfg["BLOCK_M"], down_cfg["BLOCK_N"], down_cfg["BLOCK_K"]
    max_blocks_m = aligned.max_blocks * (align_m // bm)
    grid = (max_blocks_m * -(-hidden // bn),)
    gemm.grouped_down_kernel[grid](
        h, w2, y, ops.out_w, aligned.sorted_pairs, aligned.block_expert, aligned.num_blocks, b2, sw2,
        num_pairs, hidden, inter, max_blocks_m, routed,
        h.stride(0), w2.stride(0), w2.stride(1), w2.stride(2), y.stride(0), b2.stride(0), sw2.stride(0),
        **ops.down_flags, BLOCK_M=bm, ALIGN_M=align_m, BLOCK_N=bn, BLOCK_K=bk,
        GROUP_M=down_cfg["GROUP_M"], EVEN_K=inter % bk == 0, **ops.flags, **_launch_opts(down_cfg),
    )  # fmt: skip


def _decode_gemms(x, y, ops: _Operands, pairs: LayerPairs, spec: MoESpec, gate_up_cfg: dict, down_cfg: dict):
    """decode GEMM gate/up + epilogue -> decode GEMM down + epilogue, into y (no alignment)."""
    num_pairs, top_k, routed = x.shape[0] * pairs.top_k, pairs.top_k, pairs.routed_experts
    hidden, inter = spec.hidden, spec.intermediate
    w1, w2, b1, b2, sw1, sw2 = ops.w1, ops.w2, ops.b1, ops.b2, ops.shared_w1, ops.shared_w2
    ids = pairs.ids.reshape(-1).contiguous()
    by_expert = num_pairs > pairs.num_experts
    programs = pairs.num_experts if by_expert else num_pairs

    h = torch.empty(num_pairs, inter, dtype=x.dtype, device=x.device)
    bn, bk = gate_up_cfg["BLOCK_N"], gate_up_cfg["BLOCK_K"]
    decode_kernels.decode_gate_up_kernel[(programs, -(-inter // bn))](
        x, w1, h, ids, ops.in_w, b1, sw1, num_pairs, top_k, hidden, inter, routed,
        x.stride(0), x.stride(1), w1.stride(0), w1.stride(1), w1.stride(2), h.stride(0), b1.stride(0), sw1.stride(0),
        BY_EXPERT=by_expert, **ops.gate_up_flags,
        BLOCK_P=gate_up_cfg["BLOCK_P"], BLOCK_N=bn, BLOCK_K=bk, EVEN_K=hidden % bk == 0,
        **ops.flags, **_launch_opts(gate_up_cfg),
    )  # fmt: skip

    bn, bk = down_cfg["BLOCK_N"], down_cfg["BLOCK_K"]
    decode_kernels.decode_down_kernel[(programs, -(-hidden // bn))](
        h, w2, y, ids, ops.out_w, b2, sw2, num_pairs, hidden, inter, routed,
        h.stride(0), w2.stride(0), w2.stride(1), w2.stride(2), y.stride(0), b2.stride(0), sw2.stride(0),
        BY_EXPERT=by_expert, **ops.down_flags,
        BLOCK_P=down_cfg["BLOCK_P"], BLOCK_N=bn, BLOCK_K=bk, EVEN_K=inter % bk == 0,
        **ops.flags, **_launch_opts(down_cfg),
    )  # fmt: skip
