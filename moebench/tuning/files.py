"""Where tuned-config files live and how they are written: folders, file names, atomic writes.

Config folders, searched in order: $MOEBENCH_CONFIG_DIR (the user's), then the shipped folder
(the repository's results/configs/ in an editable install; a wheel ships none). One file per
(device, Triton version, implementation, kernel, spec); moebench.tuning.cache reads them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import glob
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from moebench.spec import MoESpec, dtype_name
from moebench.tuning.device import triton_version

CONFIG_DIR_ENV = "MOEBENCH_CONFIG_DIR"


@functools.cache
def shipped_config_dir() -> Path | None:
    """The repository's results/configs/ when moebench runs from a source checkout (editable
    install), else None: a wheel does not ship tuned configs (results/ is not a package)."""
    root = Path(__file__).resolve().parents[2]
    folder = root / "results" / "configs"
    if folder.is_dir() and (root / "pyproject.toml").is_file():
        return folder
    return None


def config_dirs() -> tuple[str, ...]:
    """Folders searched for tuned configs, first wins: $MOEBENCH_CONFIG_DIR, then the shipped one."""
    dirs = []
    user = os.environ.get(CONFIG_DIR_ENV)
    if user:
        dirs.append(user)
    shipped = shipped_config_dir()
    if shipped is not None and str(shipped) not in dirs:
        dirs.append(str(shipped))
    return tuple(dirs)


def default_out_dir() -> Path | None:
    """Where `moebench tune` writes without --out-dir: $MOEBENCH_CONFIG_DIR, else the shipped folder."""
    user = os.environ.get(CONFIG_DIR_ENV)
    return Path(user) if user else shipped_config_dir()


def spec_tag(spec: MoESpec) -> str:
    """E8-k2-H4096-I14336-swiglu-bf16, with the experts' weight format appended when quantised (-int4-g128)."""
    e, k, h, i = spec.shape
    quant = "" if spec.quant is None else f"-{spec.quant}"
    return f"E{e}-k{k}-H{h}-I{i}-{spec.activation}-{dtype_name(spec.dtype)}{quant}"


def spec_fields(spec: MoESpec) -> dict:
    """The spec as a config file's meta records it ("quant" only for quantised experts: older files stay valid)."""
    e, k, h, i = spec.shape
    fields = {
        "num_experts": e,
        "top_k": k,
        "hidden": h,
        "intermediate": i,
        "activation": spec.activation,
        "dtype": dtype_name(spec.dtype),
    }
    if spec.quant is not None:
        fields["quant"] = spec.quant
    return fields


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def file_name(impl: str, kernel: str, spec: MoESpec, triton: str) -> str:
    return f"{_safe(impl)}__{_safe(kernel)}__{spec_tag(spec)}__triton-{_safe(triton)}.json"


def config_path(
    root: str | Path, device_key: str, impl: str, kernel: str, spec: MoESpec, triton: str | None = None
) -> Path:
    return Path(root) / device_key / file_name(impl, kernel, spec, triton or triton_version())


def _version_order(path: Path) -> tuple:
    version = path.name.rsplit("__triton-", 1)[-1].removesuffix(".json")
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", version))


def other_version_paths(root: str | Path, device_key: str, impl: str, kernel: str, spec: MoESpec) -> list[Path]:
    """Files for the same key tuned under other Triton versions, newest version first."""
    exact = config_path(root, device_key, impl, kernel, spec)
    prefix = glob.escape(str(exact.parent / exact.name.rsplit("__triton-", 1)[0]))
    found = [Path(p) for p in glob.glob(prefix + "__triton-*.json") if Path(p).name != exact.name]
    return sorted(found, key=_version_order, reverse=True)


# -- writing ----------------------------------------------------------------------------------


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on a folder (flock on its descriptor) so concurrent writers merge, not clobber."""
    try:
        import fcntl
    except ImportError:  # Windows: one writer per folder is assumed
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file in the same folder, then os.replace: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def run_meta(device_meta: dict, command: str) -> dict:
    """The environment a tuning run records (device, versions, date, command line)."""
    return {
        "device": device_meta,
        "torch": torch.__version__,
        "triton": triton_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
    }
