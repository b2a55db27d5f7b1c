"""Where the experts live in expert parallelism: which rank holds which expert, with optional replicas.

A placement lists, for every rank, the global ids of the experts it holds in local id order (local id i
on rank r is `rank_experts[r][i]`). An expert held by several ranks is replicated (redundant experts,
the idea behind DeepSeek's expert-parallel load balancer): the pairs routed to it, numbered 0, 1, 2, ...
in global token order (rank 0's tokens first), go to its copies in turn (pair j to copy j mod copies),
a deterministic choice that splits any routing evenly: the copies' counts differ by at most one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from moebench.errors import MoEInputError
from moebench.routing import sort_by_expert


@dataclass(frozen=True)
class Placement:
    """rank_experts[r]: the global expert ids rank r holds, in its local id order (replicas included)."""

    num_experts: int
    rank_experts: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        e = self.num_experts
        if not self.rank_experts:
            raise MoEInputError("rank_experts: expected at least one rank")
        held: set[int] = set()
        for r, experts in enumerate(self.rank_experts):
            if not experts:
                raise MoEInputError(f"rank_experts: rank {r} holds no expert (every rank needs at least one)")
            if len(set(experts)) != len(experts):
                raise MoEInputError(f"rank_experts: rank {r} holds an expert twice: {list(experts)}")
            bad = [x for x in experts if not 0 <= x < e]
            if bad:
                raise MoEInputError(f"rank_experts: rank {r} holds ids outside [0, {e}): {bad}")
            held.update(experts)
        missing = sorted(set(range(e)) - held)
        if missing:
            raise MoEInputError(f"rank_experts: experts {missing} are held by no rank")

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def contiguous(cls, num_experts: int, num_ranks: int) -> Placement:
        """Rank r holds a contiguous block of experts; block sizes differ by at most one."""
        return cls.from_owner([r for r, n in enumerate(_block_sizes(num_experts, num_ranks)) for _ in range(n)])

    @classmethod
    def round_robin(cls, num_experts: int, num_ranks: int) -> Placement:
        """Expert e lives on rank e mod P."""
        _check_sizes(num_experts, num_ranks)
        return cls.from_owner([e % num_ranks for e in range(num_experts)], num_ranks)

    @classmethod
    def from_owner(cls, owner: Sequence[int], num_ranks: int | None = None) -> Placement:
        """owner[e] = the rank holding expert e (one copy each); P = max(owner) + 1 unless given."""
        owner = [int(r) for r in owner]
        p = (max(owner) + 1 if owner else 0) if num_ranks is None else num_ranks
        _check_sizes(len(owner), p)
        bad = [r for r in owner if not 0 <= r < p]
        if bad:
            raise MoEInputError(f"owner: ranks must be in [0, {p}), got {bad}")
        return cls(len(owner), tuple(tuple(e for e, r in enumerate(owner) if r == rank) for rank in range(p)))

    def with_replicas(self, replicas: Sequence[tuple[int, int]]) -> Placement:
        """This placement plus a copy of expert e on rank r for each (e, r), appended to r's local ids."""
        experts = [list(x) for x in self.rank_experts]
        for e, r in replicas:
            if not 0 <= r < self.num_ranks:
                raise MoEInputError(f"replicas: rank {r} outside [0, {self.num_ranks})")
            experts[r].append(int(e))
        return Placement(self.num_experts, tuple(tuple(x) for x in experts))

    def with_redundant(self, loads: Sequence[float] | torch.Tensor, extra_per_rank: int) -> Placement:
        """Add up to `extra_per_rank` copies of the most loaded experts on every rank (a greedy sketch of
        DeepSeek's EPLB): each copy goes to the expert with the highest load per copy whose copy, put on
        the least loaded rank with a free slot that lacks it, keeps that rank below the most loaded one;
        slots no copy can use that way stay empty. Loads are per expert (e.g. pair counts of a measured
        or drawn routing); copies share their expert's load equally (to one pair)."""
        loads = [float(v) for v in (loads.tolist() if isinstance(loads, torch.Tensor) else loads)]
        if len(loads) != self.num_experts:
            raise MoEInputError(f"loads: expected {self.num_experts} values, got {len(loads)}")
        if extra_per_rank < 0:
            raise MoEInputError(f"extra_per_rank: expected >= 0, got {extra_per_rank}")
        copies = [0] * self.num_experts
        holders: list[set[int]] = [set(x) for x in self.rank_experts]
        for experts in self.rank_experts:
            for e in experts:
                copies[e] += 1
        rank_load = [sum(loads[e] / copies[e] for e in x) for x in self.rank_experts]
        free = [extra_per_rank] * self.num_ranks
        replicas: list[tuple[int, int]] = []
        for _ in range(extra_per_rank * self.num_ranks):
            peak = max(rank_load)
            for e in sorted(range(self.num_experts), key=lambda x: -loads[x] / copies[x]):
                share = loads[e] / (copies[e] + 1)
                ranks = [r for r in range(self.num_ranks) if free[r] and e not in holders[r]]
                if ranks and min(rank_load[r] for r in ranks) + share < peak:
                    break
            else:
                break  # no copy would lower the most loaded rank's load
            r = min(ranks, key=lambda x: rank_load[x])
            for h in range(self.num_ranks):  # the existing copies each give up part of their share
                if e in holders[h]:
                    rank_load[h] -= loads[e] / copies[e] - share
            copies[e] += 1
            holders[r].add(e)
            free[r] -= 1
            rank_load[r] += share
            replicas.append((e, r))
        return self.with_replicas(replicas)

    # -- queries --------------------------------------------------------------------------------
    @property
    def num_ranks(self) -> int:
        return len(self.rank_experts)

    @property
    def has_replicas(self) -> bool:
        return sum(len(x) for x in self.rank_experts) > self.num_experts

    @functools.cached_property
    def _tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(copies [E], first copy index [E], copy's rank [S], copy's local id [S]) on the CPU; copies
        sorted by expert, then rank (S = all expert slots). Built once per placement."""
        slots = sorted((e, r, i) for r, experts in enumerate(self.rank_experts) for i, e in enumerate(experts))
        ids = torch.tensor([s[0] for s in slots], dtype=torch.int64)
        copies = torch.bincount(ids, minlength=self.num_experts)
        first = torch.cumsum(copies, 0) - copies
        rank = torch.tensor([s[1] for s in slots], dtype=torch.int64)
        local = torch.tensor([s[2] for s in slots], dtype=torch.int64)
        return copies, first, rank, local

    def assign(self, topk_ids: torch.Tensor, before: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Destination of every (token, slot) pair.

        topk_ids: [T, k] global expert ids; before: [E] pairs routed to each expert by the tokens
        before these ones (on lower ranks; None = none); it only matters for replicated experts.
        Returns (rank [T*k] int64, local id on that rank [T*k] int64), pairs in token-major order.
        """
        copies, first, rank, local = (t.to(topk_ids.device) for t in self._tables)
        ids = topk_ids.reshape(-1)
        if not self.has_replicas:
            return rank[first[ids]], local[first[ids]]
        order, _, offsets = sort_by_expert(ids, self.num_experts)
        number = torch.empty_like(ids)  # the pair's number among its expert's pairs, in token order
        number[order] = torch.arange(ids.numel(), device=ids.device) - offsets[ids[order]]
        if before is not None:
            number += before.to(ids.device)[ids]
        slot = first[ids] + torch.remainder(number, copies[ids])
        return rank[slot], local[slot]


def _check_sizes(num_experts: int, num_ranks: int) -> None:
    if num_ranks < 1:
        raise MoEInputError(f"num_ranks: expected >= 1, got {num_ranks}")
    if num_experts < num_ranks:
        raise MoEInputError(f"num_ranks: {num_ranks} ranks need at least as many experts, got {num_experts}")


def _block_sizes(num_experts: int, num_ranks: int) -> list[int]:
    _check_sizes(num_experts, num_ranks)
    base, rest = divmod(num_experts, num_ranks)
    return [base + (r < rest) for r in range(num_ranks)]
