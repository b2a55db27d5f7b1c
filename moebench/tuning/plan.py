"""Planning a tuning run: which (implementation, kernel, spec, bucket) cells need a job, and which
are decided without running anything (already recorded in the output folder, or a kernel that does
not run at that T). Also the summary row every cell ends as (TuneRow).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from moebench import registry
from moebench.errors import MoEInputError
from moebench.spec import MoESpec
from moebench.tuning import cache
from moebench.tuning.job import TuneJob
from moebench.tuning.space import tunables


@dataclass
class TuneRow:
    """One (impl, kernel, spec, bucket) line of the summary."""

    impl: str
    kernel: str
    spec: MoESpec
    bucket: int
    status: str  # "tuned", "recorded" (already in the file), "skipped" (does not run there), "failed"
    config: dict | None = None
    ms: float | None = None
    default_ms: float | None = None
    tried: int = 0
    rejected: int = 0
    detail: str = ""
    path: Path | None = None

    @property
    def speedup(self) -> float | None:
        if self.ms and self.default_ms:
            return self.default_ms / self.ms
        return None


@dataclass
class TunePlan:
    jobs: list[TuneJob] = field(default_factory=list)
    rows: list[TuneRow] = field(default_factory=list)  # decided without running anything


def tunable_impls(names: Sequence[str] | None, device: str) -> list[str]:
    """Implementations to tune: the named ones (each must have tunables and run on `device`),
    else every available implementation that has tunable kernels."""
    if names:
        chosen = []
        for name in names:
            info = registry.get(name)
            if not tunables(name):
                raise MoEInputError(f"--impl: {name} has no tunable kernels")
            ok, reason = info.available(device)
            if not ok:
                raise MoEInputError(f"--impl: {name} is not available on {device}: {reason}")
            chosen.append(name)
        return chosen
    return [i.name for i in registry.all_impls() if tunables(i.name) and i.available(device)[0]]


def _recorded(path: Path, sig: cache.Signature, memo: dict) -> dict[int, dict]:
    if path not in memo:
        memo[path] = (cache.read_buckets(path, sig) or {}) if path.exists() else {}
    return memo[path]


def _plan_bucket(
    impl: str, spec: MoESpec, bucket: int, *, out_dir: Path, device_key: str, force: bool, memo: dict
) -> tuple[list[TuneRow], tuple[str, ...], dict]:
    """(rows decided now, kernels to tune, recorded configs of the others) for one bucket."""
    rows, fixed, todo = [], {}, []
    for kernel_def in tunables(impl):
        kernel = kernel_def.kernel
        path = cache.config_path(out_dir, device_key, impl, kernel, spec)
        recorded = _recorded(path, cache.signature(kernel_def, spec), memo)
        if bucket in recorded and not force:
            entry = recorded[bucket]
            fixed[kernel] = entry["config"]
            row = TuneRow(impl, kernel, spec, bucket, "recorded", entry["config"], path=path)
            row.ms, row.default_ms = entry.get("ms"), entry.get("default_ms")
            row.tried, row.detail = entry.get("candidates_tried", 0), "already in the file"
            rows.append(row)
        elif not kernel_def.space(spec, bucket):
            rows.append(TuneRow(impl, kernel, spec, bucket, "skipped", detail=f"no candidates at T={bucket}"))
        else:
            todo.append(kernel_def)
    chosen = {**{t.kernel: t.default(spec, bucket) for t in tunables(impl)}, **fixed}
    if todo and all(t.active is not None and not t.active(chosen) for t in todo):
        # e.g. a resumed run whose recorded path selects the other path's kernels only
        detail = "does not run under the recorded configs"
        rows += [TuneRow(impl, t.kernel, spec, bucket, "skipped", detail=detail) for t in todo]
        todo = []
    return rows, tuple(t.kernel for t in todo), fixed


def plan(
    specs: Iterable[MoESpec],
    impls: Sequence[str],
    buckets: Sequence[int],
    *,
    device: str,
    device_key: str,
    out_dir: Path,
    force: bool = False,
    budget_s: float | None = None,
    max_configs: int | None = None,
    setup: tuple[str, ...] = (),
    compile_workers: int = 0,
) -> TunePlan:
    """Jobs for what is not yet recorded under out_dir/device_key (everything when force)."""
    result = TunePlan()
    memo: dict[Path, dict] = {}
    setup_paths = _setup_paths(setup)
    for impl in impls:
        info = registry.get(impl)
        for spec in specs:
            if not info.supports(spec.dtype):
                continue
            for bucket in buckets:
                rows, kernels, fixed = _plan_bucket(
                    impl, spec, bucket, out_dir=out_dir, device_key=device_key, force=force, memo=memo
                )
                result.rows += rows
                if kernels:
                    job = TuneJob(
                        impl, spec, bucket, kernels, device, fixed, budget_s, max_configs, setup, setup_paths,
                        compile_workers,
                    )  # fmt: skip
                    result.jobs.append(job)
    return result


def _setup_paths(setup: tuple[str, ...]) -> dict:
    """Files of the setup modules loaded here, so a worker that cannot import them by name can."""
    paths = {}
    for item in setup:
        module = sys.modules.get(item.partition(":")[0])
        if module is not None and getattr(module, "__file__", None):
            paths[module.__name__] = module.__file__
    return paths
