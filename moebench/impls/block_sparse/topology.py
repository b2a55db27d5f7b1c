"""The block-sparse layout of the MoE hidden activation, built on the device without a host sync.

The (token, slot) pairs are sorted by expert and each expert's run of rows is padded to a
multiple of the block size B. The hidden activation is then a block-sparse matrix
[max_rows, E * NB_I * B] (NB_I = ceil(I / B)): the row blocks of expert e hold nonzero blocks in
column blocks e * NB_I .. e * NB_I + NB_I - 1 only. Padding rows and columns are zero.

Built from the grouped path's routing alignment (moebench.impls.common.align: 4 Triton launches, with
BLOCK_M = B) plus one layout launch (moebench.kernels.block_sparse.layout) for the forward; the transposed
index that only the backward needs is built (in torch) only when asked for.

Shapes are fixed by host-known bounds, so the layout can be captured in a CUDA graph:
  max_row_blocks = min(T*k, ceil(T*k / B) + min(E, T*k))   >= sum_e ceil(n_e / B)
  max_blocks = max_row_blocks * NB_I,  max_rows = max_row_blocks * B
Entries past the used part are marked (-1, or empty BSR rows) and kernels skip them.
No torch.bincount (it reads its maximum back to the host on CUDA) and no .item().
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from moebench.impls.block_sparse.config import check_block
from moebench.impls.common.align import align_pairs
from moebench.kernels.block_sparse.layout import bsr_layout_kernel
from moebench.kernels.common.pow2 import next_pow2

LAYOUT_TILE_ELEMENTS = 4096  # elements of one program's [row blocks, BLOCK or NB_PAD] tile


@dataclass(frozen=True)
class Topology:
    """Index arrays of the block-sparse hidden activation (all int32 on the device unless noted).

    row_to_pair [max_rows]: pair id (token * k + slot) of each padded row, -1 for padding.
    row_block_expert [max_row_blocks]: expert of each row block, -1 past the used row blocks.
    block_rows, block_cols [max_blocks]: (row block, column block) of each nonzero block in
        row-major order; -1 for unused entries. Block b's data is blocks[b] ([B, B], row-major).
    row_offsets [max_row_blocks + 1]: BSR row pointer: blocks row_offsets[rb] .. row_offsets[rb+1].
    num_row_blocks [1]: row blocks in use (device scalar).
    Backward only (None unless built with transposed=True):
    column_offsets_t [E * NB_I + 1]: transposed (column-major) pointer per column block.
    block_index_t, block_rows_t [max_blocks]: the same blocks in column-major order: their block
        index and row block; -1 for unused entries (which sort last).
    """

    block: int
    num_experts: int
    intermediate: int
    num_tokens: int
    top_k: int
    max_row_blocks: int
    row_to_pair: torch.Tensor
    row_block_expert: torch.Tensor
    block_rows: torch.Tensor
    block_cols: torch.Tensor
    row_offsets: torch.Tensor
    num_row_blocks: torch.Tensor
    column_offsets_t: torch.Tensor | None = None
    block_index_t: torch.Tensor | None = None
    block_rows_t: torch.Tensor | None = None

    @property
    def blocks_per_row(self) -> int:
        """NB_I: column blocks per expert (ceil(I / B))."""
        return -(-self.intermediate // self.block)

    @property
    def max_blocks(self) -> int:
        return self.max_row_blocks * self.blocks_per_row

    @property
    def max_rows(self) -> int:
        return self.max_row_blocks * self.block

    @property
    def num_column_blocks(self) -> int:
        return self.num_experts * self.blocks_per_row

    @property
    def has_transposed(self) -> bool:
        return self.column_offsets_t is not None


def build_topology(
    topk_ids: torch.Tensor, num_experts: int, intermediate: int, block: int, *, transposed: bool = True
) -> Topology:
    """topk_ids [T, k] int64 -> the layout for block size `block` (see module docstring).

    transposed=False skips the index only the backward reads (inference: 5 launches in all)."""
    block = check_block(block)
    device = topk_ids.device
    num_tokens, top_k = topk_ids.shape
    num_pairs = num_tokens * top_k
    nb = -(-intermediate // block)
    alignment = align_pairs(topk_ids, num_experts, block)  # BLOCK_M = B: row blocks = M blocks
    max_row_blocks = alignment.max_blocks
    i32 = dict(dtype=torch.int32, device=device)
    row_to_pair = torch.empty(max_row_blocks * block, **i32)
    block_rows = torch.empty(max_row_blocks * nb, **i32)
    block_cols = torch.empty(max_row_blocks * nb, **i32)
    row_offsets = (torch.empty if max_row_blocks else torch.zeros)(max_row_blocks + 1, **i32)  # kernel writes all
    if max_row_blocks:
        nb_pad = next_pow2(nb)
        row_blocks_per_program = max(1, min(64, LAYOUT_TILE_ELEMENTS // max(block, nb_pad)))
        bsr_layout_kernel[(-(-max_row_blocks // row_blocks_per_program),)](
            alignment.sorted_pairs, alignment.block_expert, alignment.num_blocks,
            row_to_pair, block_rows, block_cols, row_offsets,
            num_pairs, max_row_blocks, nb,
            BLOCK=block, NB_PAD=nb_pad, ROW_BLOCKS=row_blocks_per_program,
        )  # fmt: skip
    topo = Topology(
        block=block,
        num_experts=num_experts,
        intermediate=intermediate,
        num_tokens=num_tokens,
        top_k=top_k,
        max_row_blocks=max_row_blocks,
        row_to_pair=row_to_pair,
        row_block_expert=alignment.block_expert,
        block_rows=block_rows,
        block_cols=block_cols,
        row_offsets=row_offsets,
        num_row_blocks=alignment.num_blocks,
    )
    return with_transposed(topo) if transposed else topo


def with_transposed(topo: Topology) -> Topology:
    """The topology plus its transposed (column-major) index, which the weight gradients read."""
    if topo.has_transposed:
        return topo
    max_row_blocks = topo.max_row_blocks
    block_cols, block_rows = topo.block_cols.long(), topo.block_rows.long()
    used = block_cols >= 0
    num_columns = topo.num_column_blocks
    i64 = dict(dtype=torch.int64, device=block_cols.device)
    # the same blocks sorted by (column block, row block), unused ones last
    key = torch.where(used, block_cols * max(max_row_blocks, 1) + block_rows, num_columns * max(max_row_blocks, 1))
    block_index_t = torch.argsort(key, stable=True)
    block_rows_t = block_rows[block_index_t]
    column_counts = torch.zeros(num_columns + 1, **i64)
    column_counts.scatter_add_(0, torch.where(used, block_cols, num_columns), torch.ones_like(block_cols))
    column_offsets_t = torch.zeros(num_columns + 1, **i64)
    torch.cumsum(column_counts[:num_columns], 0, out=column_offsets_t[1:])
    as32 = lambda t: t.to(torch.int32).contiguous()  # noqa: E731
    return dataclasses.replace(
        topo,
        column_offsets_t=as32(column_offsets_t),
        block_index_t=as32(torch.where(block_rows_t >= 0, block_index_t, -1)),
        block_rows_t=as32(block_rows_t),
    )
