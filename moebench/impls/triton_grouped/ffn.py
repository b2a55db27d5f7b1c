"""Launch the two FFN pipelines of `triton_grouped` on already-routed pairs.

grouped: align (4 small kernels) -> grouped GEMM gate/up + activation -> grouped GEMM down x
         router weight -> combine. For any T; tiles of BLOCK_M rows of one expert.
decode:  decode GEMM gate/up -> decode GEMM down -> combine. No alignment; for small T*k.

Both write per-pair rows y [T*k, H] (compute dtype, router weight applied in fp32 before rounding)
and combine them in slot order into `out`; with k == 1 the down kernels write `out` directly.
No host synchronisation anywhere (grids come from host-known bounds), so the whole layer can be
captured in a CUDA graph. Kernels take x's strides as given (no copy for a non-contiguous x) and
the weights' strides; h, y and out must have unit column stride (we allocate h and y; out is
checked by the caller).
"""

from __future__ import annotations

import torch

from moebench.impls.common.align import align_pairs
from moebench.impls.common.combine import combine
from moebench.kernels.common.activation import ACTIVATION_CODES
from moebench.kernels.common.interpreter import dot_flags, store_flags
from moebench.kernels.triton_grouped import decode as decode_kernels
from moebench.kernels.triton_grouped import gemm
from moebench.spec import MoESpec


def _launch_opts(cfg: dict) -> dict:
    return {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}


def run_ffn(
    path: str,  # "grouped" or "decode"
    x: torch.Tensor,  # [T, H]
    w1: torch.Tensor,  # [E, G*I, H]
    w2: torch.Tensor,  # [E, H, I]
    topk_weights: torch.Tensor,  # [T, k] fp32
    topk_ids: torch.Tensor,  # [T, k] int
    spec: MoESpec,
    out: torch.Tensor,  # [T, H], unit column stride
    first_cfg: dict,  # gate_up or decode_gate_up
    second_cfg: dict,  # down or decode_down
) -> torch.Tensor:
    """The FFN of `path` on routed pairs: two GEMMs into per-pair rows, then the combine into `out`."""
    num_pairs = x.shape[0] * spec.top_k
    # where the down kernels write per-pair rows: `out` itself when k == 1, else a scratch buffer
    y = out if spec.top_k == 1 else torch.empty(num_pairs, out.shape[1], dtype=out.dtype, device=out.device)
    gemms = _grouped_gemms if path == "grouped" else _decode_gemms
    flags = {**dot_flags(x.dtype), **store_flags(x.dtype)}
    gemms(x, w1, w2, topk_weights.reshape(-1).contiguous(), topk_ids, spec, y, first_cfg, second_cfg, flags)
    combine(y, None, out, spec.top_k)
    return out


def _grouped_gemms(x, w1, w2, weights_flat, topk_ids, spec: MoESpec, y, gate_up_cfg: dict, down_cfg: dict, flags):
    """align -> grouped GEMM gate/up + activation -> grouped GEMM down x router weight, into y."""
    num_pairs = x.shape[0] * spec.top_k
    hidden, inter = spec.hidden, spec.intermediate
    align_m = gate_up_cfg["BLOCK_M"]
    aligned = align_pairs(topk_ids, spec.num_experts, align_m)

    h = torch.empty(aligned.max_blocks * align_m, inter, dtype=x.dtype, device=x.device)
    bn, bk = gate_up_cfg["BLOCK_N"], gate_up_cfg["BLOCK_K"]
    grid = (aligned.max_blocks * -(-inter // bn),)
    gemm.grouped_gate_up_kernel[grid](
        x, w1, h, aligned.sorted_pairs, aligned.block_expert, aligned.num_blocks,
        num_pairs, spec.top_k, hidden, inter, aligned.max_blocks,
        x.stride(0), x.stride(1), w1.stride(0), w1.stride(1), w1.stride(2), h.stride(0),
        ACTIVATION=ACTIVATION_CODES[spec.activation], BLOCK_M=align_m, BLOCK_N=bn, BLOCK_K=bk,
        GROUP_M=gate_up_cfg["GROUP_M"], EVEN_K=hidden % bk == 0, **flags, **_launch_opts(gate_up_cfg),
    )  # fmt: skip

    bm, bn, bk = down_cfg["BLOCK_M"], down_cfg["BLOCK_N"], down_cfg["BLOCK_K"]
    max_blocks_m = aligned.max_blocks * (align_m // bm)
    grid = (max_blocks_m * -(-hidden // bn),)
    gemm.grouped_down_kernel[grid](
        h, w2, y, weights_flat, aligned.sorted_pairs, aligned.block_expert, aligned.num_blocks,
        num_pairs, hidden, inter, max_blocks_m,
        h.stride(0), w2.stride(0), w2.stride(1), w2.stride(2), y.stride(0),
        BLOCK_M=bm, ALIGN_M=align_m, BLOCK_N=bn, BLOCK_K=bk,
        GROUP_M=down_cfg["GROUP_M"], EVEN_K=inter % bk == 0, **flags, **_launch_opts(down_cfg),
    )  # fmt: skip


def _decode_gemms(x, w1, w2, weights_flat, topk_ids, spec: MoESpec, y, gate_up_cfg: dict, down_cfg: dict, flags):
    """decode GEMM gate/up + activation -> decode GEMM down x router weight, into y (no alignment)."""
    num_pairs = x.shape[0] * spec.top_k
    hidden, inter = spec.hidden, spec.intermediate
    ids = topk_ids.reshape(-1).contiguous()
    by_expert = num_pairs > spec.num_experts
    programs = spec.num_experts if by_expert else num_pairs

    h = torch.empty(num_pairs, inter, dtype=x.dtype, device=x.device)
    bn, bk = gate_up_cfg["BLOCK_N"], gate_up_cfg["BLOCK_K"]
    decode_kernels.decode_gate_up_kernel[(programs, -(-inter // bn))](
        x, w1, h, ids, num_pairs, spec.top_k, hidden, inter,
        x.stride(0), x.stride(1), w1.stride(0), w1.stride(1), w1.stride(2), h.stride(0),
        BY_EXPERT=by_expert, ACTIVATION=ACTIVATION_CODES[spec.activation],
        BLOCK_P=gate_up_cfg["BLOCK_P"], BLOCK_N=bn, BLOCK_K=bk, EVEN_K=hidden % bk == 0,
        **flags, **_launch_opts(gate_up_cfg),
    )  # fmt: skip

    bn, bk = down_cfg["BLOCK_N"], down_cfg["BLOCK_K"]
    decode_kernels.decode_down_kernel[(programs, -(-hidden // bn))](
        h, w2, y, ids, weights_flat, num_pairs, hidden, inter,
        h.stride(0), w2.stride(0), w2.stride(1), w2.stride(2), y.stride(0),
        BY_EXPERT=by_expert, BLOCK_P=down_cfg["BLOCK_P"], BLOCK_N=bn, BLOCK_K=bk, EVEN_K=inter % bk == 0,
        **flags, **_launch_opts(down_cfg),
    )  # fmt: skip
