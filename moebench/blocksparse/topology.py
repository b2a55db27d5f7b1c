"""The block-sparse layout of the MoE hidden activation, built on the device without a host sync.

The (token, slot) pairs are sorted by expert and each expert's run of rows is padded to a
multiple of the block size B. The hidden activation is then a block-sparse matrix
[max_rows, E * NB_I * B] (NB_I = ceil(I / B)): the row blocks of expert e hold nonzero blocks in
column blocks e * NB_I .. e * NB_I + NB_I - 1 only. Padding rows and columns are zero.

Shapes are fixed by host-known bounds, so the layout can be captured in a CUDA graph:
  max_row_blocks = (T*k + min(E, T*k) * (B - 1)) // B   >= sum_e ceil(n_e / B)
  max_blocks = max_row_blocks * NB_I,  max_rows = max_row_blocks * B
Entries past the used part are marked (-1, or empty BSR rows) and kernels skip them.
No torch.bincount (it reads its maximum back to the host on CUDA) and no .item().
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moebench.errors import MoEInputError


@dataclass(frozen=True)
class Topology:
    """Index arrays of the block-sparse hidden activation (all int32 on the device unless noted).

    row_to_pair [max_rows]: pair id (token * k + slot) of each padded row, -1 for padding.
    row_block_expert [max_row_blocks]: expert of each row block, E past the used row blocks.
    block_rows, block_cols [max_blocks]: (row block, column block) of each nonzero block in
        row-major order; -1 for unused entries. Block b's data is blocks[b] ([B, B], row-major).
    row_offsets [max_row_blocks + 1]: BSR row pointer: blocks row_offsets[rb] .. row_offsets[rb+1].
    column_offsets_t [E * NB_I + 1]: transposed (column-major) pointer per column block.
    block_index_t, block_rows_t [max_blocks]: the same blocks in column-major order: their block
        index and row block; -1 for unused entries (which sort last).
    expert_row_block_offsets [E + 1] int64: first row block of each expert.
    num_row_blocks [1] int64: row blocks in use (device scalar).
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
    column_offsets_t: torch.Tensor
    block_index_t: torch.Tensor
    block_rows_t: torch.Tensor
    expert_row_block_offsets: torch.Tensor
    num_row_blocks: torch.Tensor

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


def check_block(block: object) -> int:
    if isinstance(block, bool) or not isinstance(block, int) or block < 16 or block > 256 or block & (block - 1):
        raise MoEInputError(f"config['topology']['block']: expected a power of two in [16, 256], got {block!r}")
    return block


def max_row_blocks_bound(num_pairs: int, num_experts: int, block: int) -> int:
    """Host-side upper bound on sum_e ceil(n_e / B) over experts, given sum_e n_e = num_pairs."""
    return (num_pairs + min(num_experts, num_pairs) * (block - 1)) // block


def build_topology(topk_ids: torch.Tensor, num_experts: int, intermediate: int, block: int) -> Topology:
    """topk_ids [T, k] int64 -> the layout for block size `block` (see module docstring)."""
    block = check_block(block)
    device = topk_ids.device
    num_tokens, top_k = topk_ids.shape
    num_pairs = num_tokens * top_k
    nb = -(-intermediate // block)
    i64 = dict(dtype=torch.int64, device=device)

    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)  # pair ids, expert-sorted
    sorted_ids = flat[order]
    pair_offsets = torch.searchsorted(sorted_ids, torch.arange(num_experts + 1, **i64))  # [E+1]
    row_blocks_per_expert = (pair_offsets.diff() + block - 1) // block
    rb_offsets = torch.zeros(num_experts + 1, **i64)
    torch.cumsum(row_blocks_per_expert, 0, out=rb_offsets[1:])

    max_row_blocks = max_row_blocks_bound(num_pairs, num_experts, block)
    position = torch.arange(num_pairs, **i64) - pair_offsets[sorted_ids] + rb_offsets[sorted_ids] * block
    row_to_pair = torch.full((max_row_blocks * block,), -1, dtype=torch.int32, device=device)
    row_to_pair[position] = order.to(torch.int32)

    row_block = torch.arange(max_row_blocks, **i64)
    row_block_expert = torch.searchsorted(rb_offsets[1:].contiguous(), row_block, right=True)  # E past the end
    block_id = torch.arange(max_row_blocks * nb, **i64)
    block_row_all = block_id // nb
    block_expert = row_block_expert[block_row_all]
    used = block_expert < num_experts
    block_cols = torch.where(used, block_expert * nb + block_id % nb, -1)
    block_rows = torch.where(used, block_row_all, -1)
    num_row_blocks = rb_offsets[-1:]
    row_offsets = torch.minimum(torch.arange(max_row_blocks + 1, **i64), num_row_blocks) * nb

    # transposed index: the same blocks sorted by (column block, row block), unused ones last
    num_columns = num_experts * nb
    key = torch.where(used, block_cols * max(max_row_blocks, 1) + block_rows, num_columns * max(max_row_blocks, 1))
    block_index_t = torch.argsort(key, stable=True)
    block_rows_t = block_rows[block_index_t]
    column_counts = torch.zeros(num_columns + 1, **i64)
    column_counts.scatter_add_(0, torch.where(used, block_cols, num_columns), torch.ones_like(block_cols))
    column_offsets_t = torch.zeros(num_columns + 1, **i64)
    torch.cumsum(column_counts[:num_columns], 0, out=column_offsets_t[1:])

    as32 = lambda t: t.to(torch.int32).contiguous()
    return Topology(
        block=block,
        num_experts=num_experts,
        intermediate=intermediate,
        num_tokens=num_tokens,
        top_k=top_k,
        max_row_blocks=max_row_blocks,
        row_to_pair=row_to_pair,
        row_block_expert=as32(row_block_expert),
        block_rows=as32(block_rows),
        block_cols=as32(block_cols),
        row_offsets=as32(row_offsets),
        column_offsets_t=as32(column_offsets_t),
        block_index_t=as32(torch.where(block_rows_t >= 0, block_index_t, -1)),
        block_rows_t=as32(block_rows_t),
        expert_row_block_offsets=rb_offsets,
        num_row_blocks=num_row_blocks,
    )
