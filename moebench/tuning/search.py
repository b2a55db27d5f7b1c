"""Search one kernel's config space for one token bucket: coarse-to-fine, capped, parity-checked.

1. The default config is timed first (the baseline every tuned config is compared with).
2. Coarse: one representative per tile shape (the parameters named BLOCK_* / SPLIT_*), the one whose
   schedule parameters (num_warps, num_stages, GROUP_M, ...) are nearest the default's; tile shapes
   nearest the default's are timed first, so a tight budget still explores around the default.
3. Fine: for the `refine_top` fastest tile shapes whose fastest config passes `accept` (the fp64
   parity check; a wrong tile shape does not use up a refinement slot), their other schedule
   variants, nearest first.
4. Pick: configs in order of time; the first that `accept`s wins. A config that raises while
   timed or checked is rejected, as is one whose output fails the check.
The budget (seconds of timing) and max_configs (configs timed, the default included) stop the
search early; parity checks are not counted against either.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TILE_PREFIXES = ("BLOCK", "SPLIT")

Measure = Callable[[dict], float]  # config -> median ms; raises if the config cannot run
Accept = Callable[[dict], "str | None"]  # config -> None when its output passes, else why not


class SearchAborted(RuntimeError):
    """A failure that makes further timing meaningless (e.g. a broken CUDA context)."""


@dataclass
class Trial:
    config: dict
    ms: float | None = None
    error: str | None = None


@dataclass
class SearchResult:
    best: dict | None
    best_ms: float | None
    default_ms: float | None
    trials: list[Trial]
    rejected: list[tuple[dict, str]] = field(default_factory=list)
    stopped_by: str = "exhausted"  # "exhausted", "budget" or "max-configs"

    @property
    def tried(self) -> int:
        return len(self.trials)


def is_tile_param(name: str) -> bool:
    return name.upper().startswith(TILE_PREFIXES)


def _value_distance(a: object, b: object) -> float:
    if a == b:
        return 0.0
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if numeric and a > 0 and b > 0:
        return abs(math.log2(a) - math.log2(b))
    return 1.0


def distance(a: dict, b: dict, params: list[str]) -> float:
    """How far apart two configs are in `params` (log2 steps for numbers, 1 per other change)."""
    return sum(_value_distance(a.get(p), b.get(p)) for p in params)


def complete(candidates: list[dict], default: dict) -> list[dict]:
    """Candidates with missing parameters filled from the default, de-duplicated, default first."""
    seen, out = set(), []
    for config in [default, *candidates]:
        full = {**default, **config}
        key = tuple(sorted((k, repr(v)) for k, v in full.items()))
        if key not in seen:
            seen.add(key)
            out.append(full)
    return out


def tile_groups(candidates: list[dict], default: dict) -> list[list[dict]]:
    """Candidates grouped by tile shape; groups nearest the default's tile first, each group's
    members ordered by schedule distance from the default (the first is its representative)."""
    params = sorted({p for c in candidates for p in c})
    tile = [p for p in params if is_tile_param(p)]
    schedule = [p for p in params if not is_tile_param(p)]
    groups: dict[tuple, list[dict]] = {}
    for config in candidates:
        groups.setdefault(tuple(repr(config.get(p)) for p in tile), []).append(config)
    ordered = sorted(groups.values(), key=lambda g: distance(g[0], default, tile))
    return [sorted(g, key=lambda c: distance(c, default, schedule)) for g in ordered]


class Search:
    """One search; `run(accept)` returns the fastest config that passes `accept`."""

    def __init__(
        self,
        candidates: list[dict],
        default: dict,
        measure: Measure,
        *,
        budget_s: float | None = None,
        max_configs: int | None = None,
        refine_top: int = 3,
        on_trial: Callable[[Trial, Trial | None, int, int], None] | None = None,
    ) -> None:
        self.default = dict(default)
        self.candidates = complete(candidates, self.default)
        self.measure = measure
        self.budget_s = budget_s
        self.max_configs = max_configs
        self.refine_top = refine_top
        self.on_trial = on_trial
        self.trials: list[Trial] = []
        self.stopped_by = "exhausted"
        self._deadline = math.inf if budget_s is None else time.perf_counter() + budget_s

    @property
    def planned(self) -> int:
        n = len(self.candidates)
        return n if self.max_configs is None else min(n, self.max_configs)

    def first_configs(self) -> list[dict]:
        """What the search times before refining (the default, then one per tile shape), capped
        by max_configs: the configs worth compiling ahead (moebench.tuning.precompile)."""
        first = [self.default]
        for group in tile_groups(self.candidates, self.default):
            if group[0] not in first:
                first.append(group[0])
        return first[: self.planned] if self.max_configs is not None else first

    def _best_trial(self) -> Trial | None:
        timed = [t for t in self.trials if t.ms is not None]
        return min(timed, key=lambda t: t.ms) if timed else None

    def _may_continue(self) -> bool:
        if self.max_configs is not None and len(self.trials) >= self.max_configs:
            self.stopped_by = "max-configs"
            return False
        if self.trials and time.perf_counter() > self._deadline:
            self.stopped_by = "budget"
            return False
        return True

    def _try(self, config: dict) -> bool:
        """Time `config` unless already timed; False when a cap stops the search."""
        if any(t.config == config for t in self.trials):
            return True
        if not self._may_continue():
            return False
        trial = Trial(config)
        try:
            trial.ms = float(self.measure(config))
        except SearchAborted:
            raise
        except Exception as exc:  # a config that cannot run is rejected, the search goes on
            trial.error = f"{type(exc).__name__}: {exc}"
        self.trials.append(trial)
        if self.on_trial is not None:
            self.on_trial(trial, self._best_trial(), len(self.trials), self.planned)
        return True

    def _accept(self, config: dict) -> str | None:
        """accept(config), remembered; an exception is a rejection with its message."""
        key = repr(sorted(config.items()))
        if key not in self._verdicts:
            try:
                reason = self.accept(config)
            except SearchAborted:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self._verdicts[key] = (config, reason)
        return self._verdicts[key][1]

    def _explore(self) -> None:
        if not self._try(self.default):
            return
        groups = tile_groups(self.candidates, self.default)
        for group in groups:  # coarse
            if not self._try(group[0]):
                return
        ranked = sorted((g for g in groups if self._fastest_in(g) is not None), key=lambda g: self._fastest_in(g).ms)
        params = sorted({p for c in self.candidates for p in c})
        refined = 0
        for group in ranked:  # fine
            if refined == self.refine_top:
                return
            anchor = self._fastest_in(group).config
            if self._accept(anchor) is not None:
                continue
            refined += 1
            for config in sorted(group, key=lambda c: distance(c, anchor, params)):
                if not self._try(config):
                    return

    def _fastest_in(self, group: list[dict]) -> Trial | None:
        timed = [t for t in self.trials if t.ms is not None and t.config in group]
        return min(timed, key=lambda t: t.ms) if timed else None

    def run(self, accept: Accept) -> SearchResult:
        self.accept = accept
        self._verdicts: dict[str, tuple[dict, str | None]] = {}
        self._explore()
        default_trial = next((t for t in self.trials if t.config == self.default), None)
        best = None
        for trial in sorted((t for t in self.trials if t.ms is not None), key=lambda t: t.ms):
            if self._accept(trial.config) is None:
                best = trial
                break
        rejected = [(t.config, t.error) for t in self.trials if t.error is not None]
        rejected += [(config, reason) for config, reason in self._verdicts.values() if reason is not None]
        return SearchResult(
            best=None if best is None else best.config,
            best_ms=None if best is None else best.ms,
            default_ms=None if default_trial is None else default_trial.ms,
            trials=self.trials,
            rejected=rejected,
            stopped_by=self.stopped_by,
        )
