"""The forward layout of the block-sparse hidden activation, from the routing alignment, in one launch.

moebench.impls.common.align.align_pairs (4 launches) sorts the (token, slot) pairs by expert and pads
each expert's run to a multiple of the block size B, giving the pair of each padded row and the
expert of each row block. Every row block of expert e holds the NB_I column blocks e*NB_I .. e*NB_I
+ NB_I - 1, so the block-sparse layout follows by arithmetic: `bsr_layout_kernel` writes it for a
tile of row blocks per program. Replaces ~35 small torch ops (each a launch on the GPU).
"""

import triton
import triton.language as tl


@triton.jit
def bsr_layout_kernel(
    sorted_pairs_ptr,  # [max_row_blocks * BLOCK] int32: pair id per padded row, >= num_pairs for padding
    block_expert_ptr,  # [max_row_blocks] int32: expert of each row block, -1 past the used ones
    num_blocks_ptr,  # [1] int32: row blocks in use
    row_to_pair_ptr,  # [max_row_blocks * BLOCK] int32 out: pair id per row, -1 for padding
    block_rows_ptr,  # [max_row_blocks * NB_I] int32 out: row block of each block, -1 unused
    block_cols_ptr,  # [max_row_blocks * NB_I] int32 out: column block of each block, -1 unused
    row_offsets_ptr,  # [max_row_blocks + 1] int32 out: BSR row pointer, min(rb, used) * NB_I
    num_pairs,
    max_row_blocks,
    NB_I,  # column blocks per expert: ceil(I / BLOCK)
    BLOCK: tl.constexpr,  # rows per row block
    NB_PAD: tl.constexpr,  # next power of two >= NB_I
    ROW_BLOCKS: tl.constexpr,  # row blocks per program
):
    row_block = tl.program_id(0) * ROW_BLOCKS + tl.arange(0, ROW_BLOCKS)  # [R]
    in_grid = row_block < max_row_blocks
    expert = tl.load(block_expert_ptr + row_block, mask=in_grid, other=-1)  # [R]
    used = expert >= 0  # rows of unused row blocks were never written by the alignment

    rows = row_block[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :]  # [R, BLOCK]
    pair = tl.load(sorted_pairs_ptr + rows, mask=in_grid[:, None] & used[:, None], other=-1)
    pair = tl.where(pair < num_pairs, pair, -1)
    tl.store(row_to_pair_ptr + rows, pair, mask=in_grid[:, None])

    column = tl.arange(0, NB_PAD)[None, :]  # [1, NB_PAD]
    block = row_block[:, None] * NB_I + column  # [R, NB_PAD]
    in_row = in_grid[:, None] & (column < NB_I)
    used_2d = used[:, None] & (column >= 0)  # [R, NB_PAD]
    tl.store(block_rows_ptr + block, tl.where(used_2d, row_block[:, None] + column * 0, -1), mask=in_row)
    tl.store(block_cols_ptr + block, tl.where(used_2d, expert[:, None] * NB_I + column, -1), mask=in_row)

    used_row_blocks = tl.load(num_blocks_ptr)
    tl.store(row_offsets_ptr + row_block, tl.minimum(row_block, used_row_blocks) * NB_I, mask=in_grid)
    if tl.program_id(0) == 0:
        tl.store(row_offsets_ptr + max_row_blocks, tl.minimum(max_row_blocks, used_row_blocks) * NB_I)
