"""The MoE layer across ranks (expert parallelism) with torch.distributed all-to-all.

Every rank holds its own tokens (as in data-parallel serving) and routes them itself. Then:
  dispatch: each (token, slot) pair goes to the rank holding its expert (`Placement.assign`); ranks
            swap pair counts, then the pairs' x rows, local expert ids and router weights, with
            `all_to_all_single` and variable split sizes;
  compute:  each rank runs the shared experts on its own tokens and the pairs it received through its
            routed experts, both through the same `LocalCompute` (k=1);
  combine:  the y rows travel back by the reverse all-to-all and each token sums its k slots in slot
            order in fp32 (deterministic), adds its shared experts' output, then rounds once to x's dtype.
An input-weighted layer (Llama-4) scales each pair's x row by its router weight before sending it.
No loop over tokens on the host; the one host sync is reading the split sizes. NCCL on GPUs, gloo on
CPUs: the code is the same.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from moebench.ep.compute import LocalCompute, RankLayer, shared_output
from moebench.ep.measure import EPStats, PhaseClock
from moebench.ep.placement import Placement
from moebench.errors import MoEInputError
from moebench.routing import sort_by_expert

ID_DTYPE = torch.int32  # dtype of the local expert ids sent in dispatch


def pairs_before(topk_ids: torch.Tensor, num_experts: int, group: dist.ProcessGroup | None) -> torch.Tensor:
    """[E] int64: pairs routed to each expert by the lower ranks' tokens (numbers replicas' pairs)."""
    counts = sort_by_expert(topk_ids, num_experts)[1]
    gathered = [torch.empty_like(counts) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, counts, group=group)
    return sum(gathered[: dist.get_rank(group)], torch.zeros_like(counts))


def _exchange(send: torch.Tensor, send_splits: list[int], recv_splits: list[int], group) -> torch.Tensor:
    """all_to_all_single of the rows of `send` (grouped by destination rank) with variable splits."""
    recv = send.new_empty((sum(recv_splits), *send.shape[1:]))
    dist.all_to_all_single(recv, send.contiguous(), recv_splits, send_splits, group=group)
    return recv


def _row_bytes(t: torch.Tensor) -> int:
    return math.prod(t.shape[1:]) * t.element_size()


def ep_forward(
    x: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    placement: Placement,
    layer: RankLayer,
    local_compute: LocalCompute,
    *,
    group: dist.ProcessGroup | None = None,
    out: torch.Tensor | None = None,
    stats: EPStats | None = None,
) -> torch.Tensor:
    """This rank's layer output [T_r, H] in x's dtype for its tokens x [T_r, H].

    topk_weights [T_r, k] fp32 and topk_ids [T_r, k] int64 (global expert ids) are this rank's routing;
    layer: what this rank holds (`rank_layer(weights, placement, rank)`). out: optional [T_r, H] buffer
    written in full. stats: when given, filled with this rank's pairs, bytes and phase times (barriers are
    added between phases to time them apart).
    """
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    num_tokens, k = topk_ids.shape if topk_ids.dim() == 2 else (-1, -1)
    if x.dim() != 2 or x.shape[0] != num_tokens or topk_weights.shape != topk_ids.shape:
        raise MoEInputError(
            f"topk_ids/topk_weights: expected [T, k] for x [T, H] = {list(x.shape)}, got "
            f"{list(topk_ids.shape)} and {list(topk_weights.shape)}"
        )
    if topk_weights.dtype != torch.float32 or topk_ids.dtype != torch.int64:
        raise MoEInputError(f"topk_weights/topk_ids: expected fp32/int64, got {topk_weights.dtype}/{topk_ids.dtype}")
    if placement.num_ranks != world:
        raise MoEInputError(f"placement: made for {placement.num_ranks} ranks, the group has {world}")
    if not isinstance(layer, RankLayer) or layer.routed.spec.num_experts != len(placement.rank_experts[rank]):
        raise MoEInputError(f"layer: expected rank {rank}'s RankLayer of {len(placement.rank_experts[rank])} experts")
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype):
        raise MoEInputError(f"out: expected {list(x.shape)} {x.dtype}, got {list(out.shape)} {out.dtype}")
    clock = PhaseClock(x.device, group, enabled=stats is not None)

    clock.start("dispatch")
    before = pairs_before(topk_ids, placement.num_experts, group) if placement.has_replicas else None
    dest, local_ids = placement.assign(topk_ids, before)
    order = torch.argsort(dest, stable=True)  # pairs grouped by destination rank, token-major inside
    send_counts = torch.zeros(world, dtype=torch.int64, device=x.device).scatter_add_(0, dest, torch.ones_like(dest))
    recv_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(recv_counts, send_counts, group=group)
    send_splits, recv_splits = send_counts.tolist(), recv_counts.tolist()
    pair_weights = topk_weights.reshape(-1)[order]
    rows = x[order // k]
    if layer.input_weighted:  # FFN(w * x): the sender scales the row, the expert sees weight 1
        rows = (rows.to(torch.promote_types(x.dtype, torch.float32)) * pair_weights[:, None]).to(x.dtype)
        pair_weights = torch.ones_like(pair_weights)
    sent = (rows, local_ids[order].to(ID_DTYPE), pair_weights)
    x_recv, ids_recv, w_recv = (_exchange(t, send_splits, recv_splits, group) for t in sent)
    clock.stop()

    clock.start("compute")
    shared = shared_output(x, layer, local_compute)
    y_recv = local_compute(x_recv, ids_recv.to(torch.int64), w_recv, layer.routed)
    if y_recv.shape != x_recv.shape or y_recv.dtype != x.dtype:
        raise MoEInputError(f"local_compute: expected y {list(x_recv.shape)} {x.dtype}, got {list(y_recv.shape)}")
    clock.stop()

    clock.start("combine")
    y_back = _exchange(y_recv, recv_splits, send_splits, group)
    pair_y = torch.empty((num_tokens * k, x.shape[1]), dtype=torch.float32, device=x.device)
    pair_y[order] = y_back.to(torch.float32)
    pair_y = pair_y.view(num_tokens, k, x.shape[1])
    acc = pair_y[:, 0].clone()
    for slot in range(1, k):  # slot order, fp32: the same sum on every run
        acc += pair_y[:, slot]
    if shared is not None:
        acc += shared
    out = acc.to(x.dtype) if out is None else out.copy_(acc)
    clock.stop()

    if stats is not None:
        stats.rank, stats.tokens = rank, num_tokens
        stats.send_pairs, stats.recv_pairs = send_splits, recv_splits
        stats.dispatch_pair_bytes = sum(_row_bytes(t) for t in sent)
        stats.combine_pair_bytes = _row_bytes(y_recv)
        stats.seconds = clock.seconds()
    return out
