"""The tuned-config cache: JSON files under results/configs/ and the in-memory lookup every call uses.

One file per (device, Triton version, implementation, kernel, E, k, H, I, activation, dtype, and the
experts' weight format when quantised, moebench.tuning.files.spec_tag):

    <config dir>/<device key>/<impl>__<kernel>__E8-k2-H4096-I14336-swiglu-bf16__triton-3.6.0.json
    {"format": 1,
     "meta": {"impl", "kernel", "spec", "device", "torch", "triton", "date", "space_hash", "command"},
     "buckets": {"1": {"config": {...}, "ms": ..., "default_ms": ..., "candidates_tried": n, ...}, ...}}

Config folders, searched in order: $MOEBENCH_CONFIG_DIR (the user's), then the shipped folder
(the repository's results/configs/ in an editable install; a wheel ships none); folders, names and
atomic writes: moebench.tuning.files.

`lookup` falls back: exact file -> same device, other Triton version (warns) -> None, i.e. the
kernel's default heuristic (warns once per key on CUDA). A corrupt or stale file (format,
meta or search-space hash mismatch, unknown or missing parameters) warns and is skipped, never
used. Each key is resolved once per process; later calls touch no file.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from moebench.spec import MoESpec
from moebench.tuning.buckets import TOKEN_BUCKETS, BucketIndex
from moebench.tuning.device import device_info, triton_version
from moebench.tuning.files import (
    CONFIG_DIR_ENV,
    config_dirs,
    config_path,
    folder_lock,
    other_version_paths,
    spec_fields,
    spec_tag,
    write_atomic,
)
from moebench.tuning.space import TunableKernel, space_signature, tunable

FORMAT = 1
# device types on which a missing tuned config is worth a warning (on the CPU the default is expected)
WARN_UNTUNED_DEVICE_TYPES = {"cuda"}


class TuningCacheWarning(UserWarning):
    """A tuned-config file was unusable or only approximately matching; the message says which."""


# -- reading and validating one file ----------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """What a valid file for (impl, kernel, spec) must match."""

    impl: str
    kernel: str
    spec: dict
    space_hash: str
    known_params: frozenset[str]
    required_params: frozenset[str]


_SIGNATURES: dict[tuple, Signature] = {}


def signature(kernel: TunableKernel, spec: MoESpec) -> Signature:
    key = (kernel, spec)
    if key not in _SIGNATURES:
        space_hash, known = space_signature(kernel, spec, TOKEN_BUCKETS)
        # parameters every default has (a default may add some at some T only)
        required = frozenset.intersection(*(frozenset(kernel.default(spec, t)) for t in TOKEN_BUCKETS))
        _SIGNATURES[key] = Signature(kernel.impl, kernel.kernel, spec_fields(spec), space_hash, known, required)
    return _SIGNATURES[key]


def _problem(data: object, sig: Signature) -> str | None:
    """Why `data` is not a usable config file for `sig` (None when it is)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != FORMAT:
        return f"format {data.get('format')!r}, expected {FORMAT}"
    meta, buckets = data.get("meta"), data.get("buckets")
    if not isinstance(meta, dict) or not isinstance(buckets, dict):
        return "missing 'meta' or 'buckets'"
    if (meta.get("impl"), meta.get("kernel")) != (sig.impl, sig.kernel):
        return f"meta names {meta.get('impl')}/{meta.get('kernel')}, expected {sig.impl}/{sig.kernel}"
    if meta.get("spec") != sig.spec:
        return f"meta.spec {meta.get('spec')} != {sig.spec}"
    if meta.get("space_hash") != sig.space_hash:
        return (
            f"stale: tuned against search space {meta.get('space_hash')!r}, the kernel's space is now "
            f"{sig.space_hash!r} (re-run moebench tune)"
        )
    for bucket, entry in buckets.items():
        if not (isinstance(bucket, str) and bucket.isdigit() and int(bucket) >= 1):
            return f"bucket {bucket!r} is not a positive token count"
        config = entry.get("config") if isinstance(entry, dict) else None
        if not isinstance(config, dict):
            return f"bucket {bucket}: no config object"
        unknown = set(config) - sig.known_params
        if unknown:
            return f"stale: bucket {bucket} has unknown parameters {sorted(unknown)}"
        missing = sig.required_params - set(config)
        if missing:
            return f"stale: bucket {bucket} lacks parameters {sorted(missing)}"
        if not all(isinstance(v, (int, float, str, bool)) for v in config.values()):
            return f"bucket {bucket}: parameter values must be numbers, strings or booleans"
    return None


def read_buckets(path: Path, sig: Signature, *, quiet: bool = False) -> dict[int, dict] | None:
    """{bucket: entry} of a valid file, or None (with a warning unless quiet) if unusable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"unreadable ({type(exc).__name__}: {exc})"
    else:
        problem = _problem(data, sig)
        if problem is None:
            return {int(b): entry for b, entry in data["buckets"].items()}
    if not quiet:
        warnings.warn(f"tuned config file {path} ignored: {problem}", TuningCacheWarning, stacklevel=3)
    return None


# -- the per-process lookup -------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """The tuned configs of one key, loaded once: nearest-bucket lookup in O(log buckets)."""

    index: BucketIndex
    configs: tuple[dict, ...]
    path: Path
    source: str  # "tuned" or "tuned-other-triton"

    def config_for(self, num_tokens: int) -> dict:
        return self.configs[self.index.index(num_tokens)]


_TABLES: dict[tuple, Table | None] = {}


def clear_memo() -> None:
    """Forget loaded files (after writing new ones, or when tests switch folders)."""
    _FAST.clear()
    _TABLES.clear()
    _SIGNATURES.clear()


def _table_from(path: Path, sig: Signature, source: str) -> Table | None:
    buckets = read_buckets(path, sig)
    if not buckets:
        return None
    index = BucketIndex(buckets)
    return Table(index, tuple(buckets[b]["config"] for b in index.buckets), path, source)


def _candidates(impl: str, kernel: str, spec: MoESpec, key: str, dirs: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    """Existing files for the key in fallback order: exact (each folder), then other Triton versions."""
    for root in dirs:
        path = config_path(root, key, impl, kernel, spec)
        if path.is_file():
            yield path, "tuned"
    for root in dirs:
        for path in other_version_paths(root, key, impl, kernel, spec):
            yield path, "tuned-other-triton"


def _load_table(kernel_def: TunableKernel, spec: MoESpec, device: torch.device, dirs: tuple[str, ...]) -> Table | None:
    impl, kernel = kernel_def.impl, kernel_def.kernel
    info = device_info(device)
    for path, source in _candidates(impl, kernel, spec, info.key, dirs):
        table = _table_from(path, signature(kernel_def, spec), source)  # the signature only when a file exists
        if table is None:
            continue
        if source != "tuned":
            warnings.warn(
                f"{impl}/{kernel} {spec_tag(spec)} on {info.key}: no configs tuned under Triton "
                f"{triton_version()}; using {path.name} (re-run moebench tune to retune)",
                TuningCacheWarning,
                stacklevel=4,
            )
        return table
    if info.type in WARN_UNTUNED_DEVICE_TYPES:
        warnings.warn(
            f"{impl}/{kernel} {spec_tag(spec)}: no tuned config for {info.key} (Triton {triton_version()}) "
            f"in {list(dirs) or 'any config folder'}; using the default heuristic",
            TuningCacheWarning,
            stacklevel=4,
        )
    return None


_FAST: dict[tuple, Table | None] = {}  # by the caller's own arguments: one dict lookup per call


def _table(impl: str, kernel: str, spec: MoESpec, device: torch.device | str) -> Table | None:
    fast_key = (impl, kernel, spec, device, os.environ.get(CONFIG_DIR_ENV), os.environ.get("TRITON_INTERPRET"))
    try:
        return _FAST[fast_key]
    except (KeyError, TypeError):
        pass
    try:
        kernel_def = tunable(impl, kernel)
    except KeyError:
        return None  # not registered (yet): nothing is remembered, resolve_config reports it
    dirs = config_dirs()
    key = (kernel_def, spec, device_info(device).key, dirs)
    if key not in _TABLES:
        _TABLES[key] = _load_table(kernel_def, spec, device, dirs)
    device = torch.device(device)
    if device.type != "cuda" or device.index is not None:  # "cuda" alone follows the current device
        _FAST[fast_key] = _TABLES[key]
    return _TABLES[key]


def lookup(impl: str, kernel: str, spec: MoESpec, num_tokens: int, device: torch.device | str) -> dict | None:
    """The tuned config of the bucket nearest to num_tokens, or None: use the default heuristic."""
    table = _table(impl, kernel, spec, device)
    return None if table is None else dict(table.config_for(num_tokens))


def lookup_source(impl: str, kernel: str, spec: MoESpec, device: torch.device | str) -> tuple[str, Path | None]:
    """('tuned' | 'tuned-other-triton' | 'default', file) for reports: where configs come from."""
    table = _table(impl, kernel, spec, device)
    return ("default", None) if table is None else (table.source, table.path)


# -- writing ----------------------------------------------------------------------------------


def record_buckets(path: Path, sig: Signature, meta: dict, entries: dict[int, dict]) -> None:
    """Merge `entries` ({bucket: {"config": ..., "ms": ...}}) into the file at `path`, atomically.

    Buckets already in a valid file are kept (unless overwritten by `entries`); a corrupt or stale
    file is replaced. `meta` (this run's environment) replaces the file's meta.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(path.parent):
        buckets: dict[int, dict] = {}
        if path.exists():
            old = read_buckets(path, sig, quiet=True)
            if old is None:
                warnings.warn(f"replacing unusable tuned config file {path}", TuningCacheWarning, stacklevel=2)
            else:
                buckets.update(old)
        buckets.update(entries)
        data = {
            "format": FORMAT,
            "meta": {**meta, "impl": sig.impl, "kernel": sig.kernel, "spec": sig.spec, "space_hash": sig.space_hash},
            "buckets": {str(b): buckets[b] for b in sorted(buckets)},
        }
        write_atomic(path, data)
    clear_memo()
