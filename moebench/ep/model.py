"""An analytical MODEL (not a measurement) of the all-to-all traffic and time of one expert-parallel layer.

Given a routing (measured or drawn), the tokens each rank holds, a placement (with replicas or not),
the hidden size and the compute dtype, it counts exactly what `moebench.ep.layer.ep_forward` sends:

  dispatch, per (token, slot) pair: the x row (H values in the compute dtype), the local expert id
            (int32) and the router weight (fp32); one row per pair, so a token whose k experts share
            a rank is sent once per pair (`dedup_rows` says how many rows a per-(token, rank) dispatch
            would send instead);
  combine,  per pair: the y row (H values in the compute dtype), back to the token's rank.

A pair whose expert is on the token's own rank is copied, not sent: it is not counted as traffic.
Time is bandwidth only (no latency, no launch or synchronisation cost, no overlap with compute): each
rank sends and receives at the given rates per GPU per direction, within a node (`intra_gbps`, NVLink)
and across nodes (`inter_gbps`, the network), both at once; a rank's phase time is its slowest of those
four transfers, and the slowest rank sets the layer's time. All rates are PER DIRECTION. Defaults:
450 GB/s within a node of 8 GPUs (NVLink 4 on H100/H200: NVIDIA's 900 GB/s per GPU is both directions
together, 450 GB/s each way) and 50 GB/s across nodes (one 400 Gb/s NIC per GPU, each way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moebench.ep.layer import ID_DTYPE
from moebench.ep.placement import Placement
from moebench.errors import MoEInputError


@dataclass(frozen=True)
class Links:
    """Per-GPU, per-direction bandwidths in GB/s (1e9 bytes/s) and the node size."""

    intra_gbps: float = 450.0
    inter_gbps: float = 50.0
    gpus_per_node: int = 8


def _routes(
    topk_ids: torch.Tensor, tokens_per_rank: list[int], placement: Placement
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank of each token [T], destination rank of each pair [T*k]) on the CPU."""
    p = placement.num_ranks
    if len(tokens_per_rank) != p or sum(tokens_per_rank) != topk_ids.shape[0] or min(tokens_per_rank) < 0:
        raise MoEInputError(f"tokens_per_rank: expected {p} counts >= 0 summing to T={topk_ids.shape[0]}")
    topk_ids = topk_ids.cpu()
    dest, _ = placement.assign(topk_ids)
    return torch.repeat_interleave(torch.arange(p), torch.tensor(tokens_per_rank, dtype=torch.int64)), dest


def pair_matrix(topk_ids: torch.Tensor, tokens_per_rank: list[int], placement: Placement) -> torch.Tensor:
    """[P, P] int64: pairs that rank i sends to rank j (diagonal: pairs kept on the own rank).

    topk_ids: [T, k] global expert ids of all tokens, rank 0's first (T = sum(tokens_per_rank)).
    """
    return _matrix(*_routes(topk_ids, tokens_per_rank, placement), placement.num_ranks)


def _matrix(src: torch.Tensor, dest: torch.Tensor, p: int) -> torch.Tensor:
    flat = src.repeat_interleave(dest.numel() // max(1, src.numel())) * p + dest
    return torch.zeros(p * p, dtype=torch.int64).scatter_add_(0, flat, torch.ones_like(flat)).view(p, p)


@dataclass(frozen=True)
class TrafficModel:
    """MODEL of one layer's all-to-all (see the module docstring for what is counted). Per-rank lists."""

    pairs: torch.Tensor  # [P, P] pairs from rank i to rank j
    dispatch_pair_bytes: int
    combine_pair_bytes: int
    dedup_rows: list[int]  # x rows rank i would send with one row per (token, other rank)
    links: Links

    @property
    def num_ranks(self) -> int:
        return self.pairs.shape[0]

    def _split(self, matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(within-node, across-node) parts of a [P, P] matrix, diagonal removed."""
        node = torch.arange(self.num_ranks) // self.links.gpus_per_node
        same = node[:, None] == node[None, :]
        off = matrix * (1 - torch.eye(self.num_ranks, dtype=matrix.dtype))
        return off * same, off * ~same

    def bytes(self) -> dict[str, list[int]]:
        """Per rank: link bytes sent/received in dispatch and combine, and the across-node share."""
        d = self.pairs * self.dispatch_pair_bytes
        c = self.pairs.t() * self.combine_pair_bytes
        out = {}
        for name, m in (("dispatch", d), ("combine", c)):
            intra, inter = self._split(m)
            out[f"{name}_sent"] = (intra + inter).sum(1).tolist()
            out[f"{name}_received"] = (intra + inter).sum(0).tolist()
            out[f"{name}_inter_sent"] = inter.sum(1).tolist()
        return out

    def seconds(self) -> dict[str, list[float]]:
        """Per rank, per phase: the MODEL time (slowest of its four transfers, see the module docstring)."""
        out = {}
        for name, m in (
            ("dispatch", self.pairs * self.dispatch_pair_bytes),
            ("combine", self.pairs.t() * self.combine_pair_bytes),
        ):
            intra, inter = (t.double() for t in self._split(m))
            t_intra = torch.maximum(intra.sum(1), intra.sum(0)) / (self.links.intra_gbps * 1e9)
            t_inter = torch.maximum(inter.sum(1), inter.sum(0)) / (self.links.inter_gbps * 1e9)
            out[name] = torch.maximum(t_intra, t_inter).tolist()
        return out

    def summary(self) -> dict[str, float | str]:
        """The bottleneck rank's figures, labelled as a model."""
        b, t = self.bytes(), self.seconds()
        computed = self.pairs.sum(0).double()
        mean = float(computed.mean())
        sent = sum(b["dispatch_sent"])
        return {
            "source": "MODEL (analytical, bandwidth only)",
            # the most bytes one rank sends or receives in the phase
            "dispatch_bytes_max": max(b["dispatch_sent"] + b["dispatch_received"]),
            "combine_bytes_max": max(b["combine_sent"] + b["combine_received"]),
            "inter_node_fraction": sum(b["dispatch_inter_sent"]) / sent if sent else 0.0,
            "dispatch_s": max(t["dispatch"]),
            "combine_s": max(t["combine"]),
            "all_to_all_s": max(t["dispatch"]) + max(t["combine"]),
            "imbalance": float(computed.max()) / mean if mean else 1.0,
        }


def traffic_model(
    topk_ids: torch.Tensor,
    tokens_per_rank: list[int],
    placement: Placement,
    hidden: int,
    dtype: torch.dtype,
    links: Links | None = None,
) -> TrafficModel:
    """The MODEL for one routing: topk_ids [T, k] of all tokens in rank order (see pair_matrix)."""
    src, dest = _routes(topk_ids, tokens_per_rank, placement)
    pairs = _matrix(src, dest, placement.num_ranks)
    num_tokens, k = topk_ids.shape
    hits = torch.zeros(num_tokens, placement.num_ranks, dtype=torch.bool)  # token -> ranks it goes to
    hits[torch.arange(num_tokens).repeat_interleave(k), dest] = True
    hits[torch.arange(num_tokens), src] = False
    dedup = torch.zeros(placement.num_ranks, dtype=torch.int64).index_add_(0, src, hits.sum(1)).tolist()
    row = hidden * dtype.itemsize
    return TrafficModel(pairs, row + ID_DTYPE.itemsize + torch.float32.itemsize, row, dedup, links or Links())
