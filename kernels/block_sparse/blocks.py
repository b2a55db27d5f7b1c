"""Program -> block decoding shared by the block-sparse kernels (@triton.jit helpers, inlined).

The hidden activation is stored as nonzero [BLOCK, BLOCK] blocks (see
moebench.impls.block_sparse.topology); a program computes one [BLOCK_M, BLOCK_N] sub-tile of one
block, and the BLOCK // BLOCK_M (x BLOCK // BLOCK_N) sub-tiles of a block are adjacent programs.
Programs past the used blocks must exit at once; a helper cannot return for its kernel, so each
kernel reads what decides that here, returns itself, then decodes the rest.
"""

import triton
import triton.language as tl


@triton.jit
def sub_block(BLOCK: tl.constexpr, BLOCK_M: tl.constexpr):
    """Along grid axis 0: (block index, the BLOCK_M offsets of this program's rows within the block)."""
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    pid = tl.program_id(0)
    return pid // SUB_M, (pid % SUB_M) * BLOCK_M + tl.arange(0, BLOCK_M)


@triton.jit
def dense_columns(N, BLOCK_N: tl.constexpr):
    """Along grid axis 1: this program's BLOCK_N columns of a dense operand of N columns, and which exist."""
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    return offs_n, offs_n < N


@triton.jit
def row_pairs(row_to_pair_ptr, row_block, offs, BLOCK: tl.constexpr):
    """Rows `offs` of int64 row block `row_block` -> (row holds a pair, pair id as int64, 0 for padding)."""
    pair = tl.load(row_to_pair_ptr + row_block * BLOCK + offs)
    row_ok = pair >= 0
    return row_ok, tl.where(row_ok, pair, 0).to(tl.int64)


@triton.jit
def sdd_block(block_col_ptr, BLOCK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """SDD kernels: (program id, this program's nonzero block b as int64, its column block: -1 past
    the used blocks)."""
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    SUB_N: tl.constexpr = BLOCK // BLOCK_N
    pid = tl.program_id(0)
    b = (pid // (SUB_M * SUB_N)).to(tl.int64)
    return pid, b, tl.load(block_col_ptr + b)


@triton.jit
def sdd_tile(
    pid,  # the program id (from sdd_block)
    b,  # int64: the nonzero block (from sdd_block)
    col_block,  # its column block expert * NB_I + j (from sdd_block, >= 0)
    block_row_ptr,  # [max_blocks] int32: row block of each nonzero block
    row_to_pair_ptr,  # [max_rows] int32: pair id of each padded row, -1 = padding
    inter,
    TOP_K,
    NB_I,
    BLOCK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """SDD kernels, for a used block: (expert int64, rows offs_m and columns offs_n within the block,
    row_ok, pair id int64 (0 for padding), its token, columns of I, and which of them are < I)."""
    SUB_M: tl.constexpr = BLOCK // BLOCK_M
    SUB_N: tl.constexpr = BLOCK // BLOCK_N
    row_block = tl.load(block_row_ptr + b).to(tl.int64)
    expert = (col_block // NB_I).to(tl.int64)
    j = col_block % NB_I
    offs_m = ((pid // SUB_N) % SUB_M) * BLOCK_M + tl.arange(0, BLOCK_M)  # rows within the block
    offs_n = (pid % SUB_N) * BLOCK_N + tl.arange(0, BLOCK_N)  # columns within the block
    row_ok, safe_pair = row_pairs(row_to_pair_ptr, row_block, offs_m, BLOCK)  # rows < max_rows by construction
    token = safe_pair // TOP_K
    cols = j * BLOCK + offs_n  # index into I
    return expert, offs_m, offs_n, row_ok, safe_pair, token, cols, cols < inter
