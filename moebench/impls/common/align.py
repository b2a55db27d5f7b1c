"""Launch the routing alignment (kernels in moebench.kernels.common.align): pairs -> expert-sorted,
BLOCK_M-padded order, entirely on the device (no host sync, CUDA-graph safe, deterministic)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moebench.kernels.common import align as align_kernels
from moebench.kernels.common.pow2 import next_pow2

MAX_CHUNKS = 128  # programs of the count and scatter kernels (the scan handles this many chunks)
ONEHOT_ELEMS = 4096  # elements of one [SUB, E_PAD] one-hot tile
SCAN_TILE_ELEMS = 4096  # elements of one [MAX_CHUNKS, E_BLOCK] scan tile


@dataclass(frozen=True)
class Alignment:
    """Pairs in expert order, each expert's rows padded to a multiple of block_m.

    sorted_pairs: [max_blocks * block_m] int32, pair id (token * k + slot) at each sorted
                  position; padding rows hold num_pairs (any value >= num_pairs is padding).
    block_expert: [max_blocks] int32, expert of each block (-1 past the valid blocks).
    num_blocks:   [1] int32 on the device: blocks that hold pairs (<= max_blocks).
    max_blocks:   host-known upper bound that sizes buffers and grids.
    """

    sorted_pairs: torch.Tensor
    block_expert: torch.Tensor
    num_blocks: torch.Tensor
    max_blocks: int
    block_m: int
    num_pairs: int


def max_blocks_for(num_pairs: int, num_experts: int, block_m: int) -> int:
    """Upper bound of sum_e ceil(count_e / block_m) over any routing of num_pairs pairs.

    Each non-empty expert adds at most one partly filled block, and every block holds a pair.
    """
    if num_pairs == 0:
        return 0
    return min(num_pairs, -(-num_pairs // block_m) + min(num_experts, num_pairs))


def align_pairs(topk_ids: torch.Tensor, num_experts: int, block_m: int) -> Alignment:
    """topk_ids: [T, k] (or [P]) integer expert ids in [0, E) -> Alignment. Launches 4 kernels."""
    ids = topk_ids.reshape(-1)
    if not ids.is_contiguous():
        ids = ids.contiguous()
    num_pairs = ids.numel()
    max_blocks = max_blocks_for(num_pairs, num_experts, block_m)
    e_pad = next_pow2(num_experts)
    sub = max(1, min(64, ONEHOT_ELEMS // e_pad))
    chunk_size = sub * max(1, -(-num_pairs // (MAX_CHUNKS * sub)))
    num_chunks = -(-num_pairs // chunk_size) if num_pairs else 0

    # one int32 workspace, sliced: chunk counts, chunk bases, expert starts/counts, block count;
    # every slice starts 16-byte aligned (Triton specialises aligned pointers: wider accesses)
    sizes = [num_chunks * num_experts, num_chunks * num_experts, num_experts + 1, num_experts, 1]
    sizes += [max_blocks * block_m, max_blocks]
    padded = [-(-n // 4) * 4 for n in sizes]
    work = torch.empty(sum(padded), dtype=torch.int32, device=ids.device)
    slices = [part[:n] for part, n in zip(torch.split(work, padded), sizes)]
    chunk_counts, chunk_base, expert_start, expert_count, num_blocks, sorted_pairs, block_expert = slices
    if num_pairs == 0:
        num_blocks.zero_()
        return Alignment(sorted_pairs, block_expert, num_blocks, 0, block_m, 0)

    align_kernels.count_experts_kernel[(num_chunks,)](
        ids, chunk_counts, num_pairs, chunk_size, num_experts, E_PAD=e_pad, SUB=sub
    )
    e_block = max(1, min(e_pad, SCAN_TILE_ELEMS // MAX_CHUNKS))
    align_kernels.scan_experts_kernel[(1,)](
        chunk_counts,
        chunk_base,
        expert_start,
        expert_count,
        num_blocks,
        num_chunks,
        num_experts,
        BLOCK_M=block_m,
        CHUNKS_PAD=MAX_CHUNKS,
        E_BLOCK=e_block,
        num_warps=8,
    )
    align_kernels.scatter_pairs_kernel[(num_chunks,)](
        ids, chunk_base, sorted_pairs, num_pairs, chunk_size, num_experts, E_PAD=e_pad, SUB=sub
    )
    blocks_per_program = max(1, min(64, ONEHOT_ELEMS // max(e_pad, block_m)))
    align_kernels.fill_blocks_kernel[(-(-max_blocks // blocks_per_program),)](
        expert_start,
        expert_count,
        num_blocks,
        sorted_pairs,
        block_expert,
        num_pairs,
        num_experts,
        max_blocks,
        E_PAD=e_pad,
        BLOCK_M=block_m,
        BLOCKS=blocks_per_program,
    )
    return Alignment(sorted_pairs, block_expert, num_blocks, max_blocks, block_m, num_pairs)
