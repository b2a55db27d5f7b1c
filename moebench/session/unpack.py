"""File what a session sent back (the files of its $OUT) under results/.

    python -m moebench.session.unpack FOLDER [--results results]

    results/<device>/                 summary.md, bench.csv, verify.csv, tune.csv, session.log,
                                      session.json, report/ (report.md and plots), pytest logs
    results/configs/<device key>/...  the tuned configs, merged into what is there

<device> is the short name of the device the session ran on, from its manifest (NVIDIA H200 ->
h200; a CPU -> cpu), so nothing is filed under a GPU's name unless it ran there. A later session on
the same device replaces the files of the same names (report/ as a whole, the pytest logs); other
files there stay, and the configs are merged file by file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from moebench.session.output import ARCHIVE_ROOT, OUT_FILES
from moebench.tuning.device import normalise_name

VENDORS = {"nvidia", "amd", "intel", "tesla"}


def device_folder(device_name: str, device_type: str = "cuda") -> str:
    """'NVIDIA H200' -> 'h200', 'NVIDIA H100 80GB HBM3' -> 'h100', any CPU -> 'cpu'."""
    if device_type != "cuda":
        return "cpu"
    words = [w for w in normalise_name(device_name).split("_") if w not in VENDORS]
    return words[0] if words else "unknown-gpu"


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        path = PurePosixPath(member.name)
        if not member.isfile() or path.is_absolute() or ".." in path.parts or path.parts[:1] != (ARCHIVE_ROOT,):
            continue
        members.append(member)
    return members


def unpack(src: Path, results: Path) -> Path:
    """Copy a session's files from `src` into `results` (see the module doc); returns the device folder."""
    src, results = Path(src), Path(results)
    manifest_path = src / "session.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{src}: no session.json (is this what a `moebench session` wrote into $OUT?)")
    manifest = json.loads(manifest_path.read_text())
    target = results / device_folder(str(manifest.get("device_name", "")), str(manifest.get("device_type", "")))
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        archive = src / OUT_FILES[-1]
        if archive.is_file():
            with tarfile.open(archive) as tar:
                for member in _safe_members(tar):
                    dest = staged.joinpath(*PurePosixPath(member.name).parts[1:])
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as fh, open(dest, "wb") as out:
                        shutil.copyfileobj(fh, out)
        for name in OUT_FILES[:-1]:  # the loose files are as new as the archive, or newer
            if (src / name).is_file():
                shutil.copyfile(src / name, staged / name)
        configs = staged / "configs"
        if configs.is_dir():
            shutil.copytree(configs, results / "configs", dirs_exist_ok=True)
            shutil.rmtree(configs)
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.glob("pytest-*.log"):  # another session's shards
            stale.unlink()
        for path in staged.iterdir():  # this session's files replace the same names, nothing else
            if path.is_dir():
                shutil.rmtree(target / path.name, ignore_errors=True)
                shutil.copytree(path, target / path.name)
            else:
                shutil.copyfile(path, target / path.name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moebench.session.unpack", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the folder holding what the session wrote into $OUT")
    parser.add_argument("--results", default="results", help="the results folder (default: results)")
    args = parser.parse_args(argv)
    try:
        target = unpack(Path(args.folder), Path(args.results))
    except FileNotFoundError as exc:
        print(f"unpack: {exc}", file=sys.stderr)
        return 2
    print(f"filed under {target} (tuned configs under {Path(args.results) / 'configs'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
