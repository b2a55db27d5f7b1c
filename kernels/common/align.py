"""Routing alignment on the device: (token, slot) pairs -> expert-sorted order padded to BLOCK_M.

A stable counting sort in three steps, with no host synchronisation (CUDA-graph safe) and no
atomics (the order is the same on every run):

1. `count_experts_kernel`, one program per chunk of pairs: pairs per expert in the chunk.
2. `scan_experts_kernel`, one program: prefix sums over chunks (per expert) and over experts
   (padded to BLOCK_M) -> where each chunk's pairs of each expert go, where each expert's rows
   start, how many pairs it has, and the number of M blocks.
3. `scatter_pairs_kernel`, one program per chunk: each pair's rank among its chunk's pairs of the
   same expert (a cumulative sum over a one-hot tile) -> its sorted position.
   `fill_blocks_kernel`, over M blocks: the expert of each block and the padding sentinel.

Pairs of one expert keep their original order (pair p = token p // k, slot p % k).
The number of chunks is at most CHUNKS_PAD (the launcher sizes chunk_size for that).
"""

import triton
import triton.language as tl


@triton.jit
def count_experts_kernel(
    topk_ids_ptr,  # [P] int64: expert of each pair (topk_ids [T, k] flattened)
    chunk_counts_ptr,  # [num_chunks, E] int32 out: pairs per expert in each chunk
    num_pairs,
    chunk_size,  # pairs per chunk, a multiple of SUB
    num_experts,
    E_PAD: tl.constexpr,  # next power of two >= E
    SUB: tl.constexpr,  # pairs per one-hot tile [SUB, E_PAD]
):
    chunk = tl.program_id(0)
    experts = tl.arange(0, E_PAD)
    counts = tl.zeros([E_PAD], dtype=tl.int32)
    start = chunk * chunk_size
    for sub in range(0, chunk_size, SUB):
        pairs = start + sub + tl.arange(0, SUB)
        ids = tl.load(topk_ids_ptr + pairs, mask=pairs < num_pairs, other=-1).to(tl.int32)
        counts += tl.sum((ids[:, None] == experts[None, :]).to(tl.int32), axis=0)
    tl.store(chunk_counts_ptr + chunk * num_experts + experts, counts, mask=experts < num_experts)


@triton.jit
def scan_experts_kernel(
    chunk_counts_ptr,  # [num_chunks, E] int32
    chunk_base_ptr,  # [num_chunks, E] int32 out: sorted position of each chunk's first pair of each expert
    expert_start_ptr,  # [E + 1] int32 out: first (padded) row of each expert; [E] = rows in all
    expert_count_ptr,  # [E] int32 out: pairs per expert
    num_blocks_ptr,  # [1] int32 out: M blocks that hold pairs
    num_chunks,
    num_experts,
    BLOCK_M: tl.constexpr,
    CHUNKS_PAD: tl.constexpr,  # power of two >= num_chunks
    E_BLOCK: tl.constexpr,  # experts per step
):
    chunks = tl.arange(0, CHUNKS_PAD)
    chunk_ok = chunks < num_chunks
    rows_before = 0  # padded rows of the experts already done
    for e0 in range(0, num_experts, E_BLOCK):
        experts = e0 + tl.arange(0, E_BLOCK)
        expert_ok = experts < num_experts
        tile = chunks[:, None] * num_experts + experts[None, :]
        tile_ok = chunk_ok[:, None] & expert_ok[None, :]
        counts = tl.load(chunk_counts_ptr + tile, mask=tile_ok, other=0)  # [CHUNKS_PAD, E_BLOCK]
        before_chunk = tl.cumsum(counts, axis=0) - counts  # exclusive prefix over chunks
        total = tl.sum(counts, axis=0)  # [E_BLOCK]
        padded = (total + BLOCK_M - 1) // BLOCK_M * BLOCK_M
        start = rows_before + tl.cumsum(padded, axis=0) - padded  # [E_BLOCK]
        tl.store(chunk_base_ptr + tile, start[None, :] + before_chunk, mask=tile_ok)
        tl.store(expert_start_ptr + experts, start, mask=expert_ok)
        tl.store(expert_count_ptr + experts, total, mask=expert_ok)
        rows_before += tl.sum(padded, axis=0)
    tl.store(expert_start_ptr + num_experts, rows_before)
    tl.store(num_blocks_ptr, rows_before // BLOCK_M)


@triton.jit
def scatter_pairs_kernel(
    topk_ids_ptr,  # [P] int64
    chunk_base_ptr,  # [num_chunks, E] int32 (from scan_experts_kernel)
    sorted_pairs_ptr,  # [max_blocks * BLOCK_M] int32 out: pair id at its sorted position
    num_pairs,
    chunk_size,
    num_experts,
    E_PAD: tl.constexpr,
    SUB: tl.constexpr,
):
    chunk = tl.program_id(0)
    experts = tl.arange(0, E_PAD)
    # next free sorted position per expert for this chunk's pairs, advanced tile by tile
    base = tl.load(chunk_base_ptr + chunk * num_experts + experts, mask=experts < num_experts, other=0)
    start = chunk * chunk_size
    for sub in range(0, chunk_size, SUB):
        pairs = start + sub + tl.arange(0, SUB)
        pair_ok = pairs < num_pairs
        ids = tl.load(topk_ids_ptr + pairs, mask=pair_ok, other=-1).to(tl.int32)
        onehot = (ids[:, None] == experts[None, :]).to(tl.int32)  # [SUB, E_PAD]
        rank = tl.cumsum(onehot, axis=0) - 1  # rank among this tile's pairs of the same expert
        dest = tl.sum(onehot * (base[None, :] + rank), axis=1)  # [SUB]
        tl.store(sorted_pairs_ptr + dest, pairs, mask=pair_ok)
        base += tl.sum(onehot, axis=0)


@triton.jit
def fill_blocks_kernel(
    expert_start_ptr,  # [E + 1] int32
    expert_count_ptr,  # [E] int32
    num_blocks_ptr,  # [1] int32
    sorted_pairs_ptr,  # [max_blocks * BLOCK_M] int32: padding rows get the sentinel num_pairs
    block_expert_ptr,  # [max_blocks] int32 out: expert of each M block, -1 past the valid blocks
    num_pairs,
    num_experts,
    max_blocks,
    E_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCKS: tl.constexpr,  # M blocks per program
):
    blocks = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)
    in_grid = blocks < max_blocks
    valid = blocks < tl.load(num_blocks_ptr)
    experts = tl.arange(0, E_PAD)
    ends = tl.load(expert_start_ptr + experts + 1, mask=experts < num_experts, other=2147483647)
    first_row = blocks * BLOCK_M
    # the expert owning a block = number of experts whose rows end at or before the block
    expert = tl.sum((ends[None, :] <= first_row[:, None]).to(tl.int32), axis=1)  # [BLOCKS]
    tl.store(block_expert_ptr + blocks, tl.where(valid, expert, -1), mask=in_grid)
    start = tl.load(expert_start_ptr + expert, mask=valid, other=0)
    count = tl.load(expert_count_ptr + expert, mask=valid, other=0)
    rows = first_row[:, None] + tl.arange(0, BLOCK_M)[None, :]  # [BLOCKS, BLOCK_M]
    # padding: the rows past an expert's pairs in its last block, and every row of the blocks past the valid
    # ones (consumers that walk all max_blocks * BLOCK_M rows, e.g. fp8's activation quantisation, skip them)
    is_padding = in_grid[:, None] & (~valid[:, None] | (rows - start[:, None] >= count[:, None]))
    sentinel = tl.zeros([BLOCKS, BLOCK_M], dtype=tl.int32) + num_pairs
    tl.store(sorted_pairs_ptr + rows, sentinel, mask=is_padding)
