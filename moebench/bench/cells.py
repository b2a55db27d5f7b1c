"""Where a (spec, T) cell's inputs and fp64 reference come from: drawn once, shared by every user.

A cell (moebench.bench.measure.Cell) is the weights, the input x and the fp64 reference of one
(spec, T); every implementation measured or checked on that cell sees the same tensors. `Cells`
draws the weights once per spec (one fresh seed per spec, unless a seed is fixed) and x and the
reference once per (spec, T) (one fresh seed each), and keeps them while they fit in `keep_bytes`,
so a session that verifies and then benchmarks a 22 GB layer at T = 16384 draws it and computes
its reference once. Least recently used specs are dropped first; the spec in use is always kept.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

import torch

from moebench.bench.measure import Cell, make_cell
from moebench.spec import MoESpec
from moebench.weights import MoEWeights, random_weights


def _nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class Cells:
    """Cells by (spec, T), made on first use. seed: weight seed = seed, input seed = seed + 1 + T
    (as `moebench bench --seed`); None draws fresh seeds, recorded in each cell."""

    def __init__(self, device: torch.device | str, *, seed: int | None = None, keep_bytes: int = 0) -> None:
        self.device = torch.device(device)
        self.seed = seed
        self.keep_bytes = keep_bytes
        self._weights: OrderedDict[MoESpec, tuple[MoEWeights, int]] = OrderedDict()
        self._cells: dict[tuple[MoESpec, int], Cell] = {}

    def _fresh(self) -> int:
        return secrets.randbelow(2**31)

    def weights(self, spec: MoESpec) -> tuple[MoEWeights, int]:
        """(weights, seed) of `spec`, drawn on first use."""
        if spec not in self._weights:
            seed = self.seed if self.seed is not None else self._fresh()
            self._weights[spec] = (random_weights(spec, device=self.device, seed=seed), seed)
        self._weights.move_to_end(spec)
        self._evict(keep=spec)
        return self._weights[spec]

    def get(self, spec: MoESpec, num_tokens: int) -> Cell:
        """The cell of (spec, T): weights, x, fp64 reference and the active-expert count."""
        key = (spec, num_tokens)
        if key not in self._cells:
            weights, weight_seed = self.weights(spec)
            input_seed = self.seed + 1 + num_tokens if self.seed is not None else self._fresh()
            self._cells[key] = make_cell(spec, num_tokens, weights, weight_seed, input_seed)
        self._weights.move_to_end(spec)
        return self._cells[key]

    def held_bytes(self) -> int:
        held = sum(_nbytes(*w.parameters()) for w, _ in self._weights.values())
        return held + sum(_nbytes(c.x, c.ref.ref) for c in self._cells.values())

    def _evict(self, keep: MoESpec) -> None:
        while len(self._weights) > 1 and self.held_bytes() > self.keep_bytes:
            oldest = next(s for s in self._weights if s != keep)
            self.drop(oldest)

    def drop(self, spec: MoESpec) -> None:
        """Forget `spec`'s weights and cells (their memory goes back to the allocator)."""
        self._weights.pop(spec, None)
        for key in [k for k in self._cells if k[0] == spec]:
            del self._cells[key]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
