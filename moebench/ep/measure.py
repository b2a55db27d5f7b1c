"""What one expert-parallel forward measured on one rank: pairs and bytes per phase, and phase times.

Bytes are counted from the tensors handed to `all_to_all_single`: dispatch moves, per pair, the x row
(compute dtype), the pair's local expert id and its router weight; combine moves the y row back.
Pairs a rank sends to itself are copied, not sent over a link: they are counted apart (`self_pairs`)
and left out of the sent/received bytes. Times come from `time.perf_counter` on the CPU and CUDA
events on a GPU; ranks meet at a barrier before each phase, so a phase's time is that phase alone
(waiting for the slowest rank to reach the phase is not in it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

PHASES = ("dispatch", "compute", "combine")


@dataclass
class EPStats:
    """One rank's figures for one forward. send_pairs[j]: pairs this rank sent to rank j (its own
    rank included); recv_pairs[j]: pairs it received from rank j."""

    rank: int = 0
    tokens: int = 0
    send_pairs: list[int] = field(default_factory=list)
    recv_pairs: list[int] = field(default_factory=list)
    dispatch_pair_bytes: int = 0  # x row + local id + router weight, as sent
    combine_pair_bytes: int = 0  # y row, as sent back
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds

    @property
    def self_pairs(self) -> int:
        return self.send_pairs[self.rank] if self.send_pairs else 0

    @property
    def pairs_sent(self) -> int:
        """Pairs sent to other ranks (over a link)."""
        return sum(self.send_pairs) - self.self_pairs

    @property
    def pairs_received(self) -> int:
        """Pairs received from other ranks (over a link)."""
        return sum(self.recv_pairs) - self.self_pairs

    @property
    def pairs_computed(self) -> int:
        """Pairs this rank's experts ran (own ones included): its compute load."""
        return sum(self.recv_pairs)

    def link_bytes(self) -> dict[str, int]:
        """Bytes over links per phase and direction (combine sends back what dispatch received)."""
        return {
            "dispatch_sent": self.pairs_sent * self.dispatch_pair_bytes,
            "dispatch_received": self.pairs_received * self.dispatch_pair_bytes,
            "combine_sent": self.pairs_received * self.combine_pair_bytes,
            "combine_received": self.pairs_sent * self.combine_pair_bytes,
        }


class PhaseClock:
    """Times consecutive phases of one forward, with a barrier before each; a no-op when disabled."""

    def __init__(self, device: torch.device, group: dist.ProcessGroup | None, enabled: bool) -> None:
        self.enabled = enabled
        self.group = group
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object, object]] = []
        self._open: tuple[str, object] | None = None

    def _now(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self, phase: str) -> None:
        if self.enabled:
            dist.barrier(group=self.group)
            self._open = (phase, self._now())

    def stop(self) -> None:
        if self.enabled and self._open is not None:
            phase, begin = self._open
            self.marks.append((phase, begin, self._now()))
            self._open = None

    def seconds(self) -> dict[str, float]:
        """phase -> seconds (synchronises the GPU once, after the forward)."""
        if self.cuda and self.marks:
            torch.cuda.synchronize()
            return {p: b.elapsed_time(e) / 1e3 for p, b, e in self.marks}
        return {p: e - b for p, b, e in self.marks}


def summarize(stats: list[EPStats]) -> dict[str, float]:
    """Across ranks: the slowest rank's time per phase, the largest link bytes per phase, and the load
    imbalance max/mean of pairs computed per rank (1.0 = even; 1.0 when no rank computed a pair)."""
    loads = [s.pairs_computed for s in stats]
    mean = sum(loads) / len(loads)
    out = {"imbalance": max(loads) / mean if mean else 1.0, "pairs_max": max(loads), "pairs_mean": mean}
    for phase in PHASES:
        out[f"{phase}_s_max"] = max(s.seconds.get(phase, float("nan")) for s in stats)
    for key in stats[0].link_bytes():
        out[f"{key}_bytes_max"] = max(s.link_bytes()[key] for s in stats)
    return out
