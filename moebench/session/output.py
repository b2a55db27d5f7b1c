"""The session's files in $OUT, rewritten complete after every item (a run cut short keeps what it
did): at most 8 plain files, because that is what comes back from a lent GPU machine.

    summary.md      what ran where, the plan against the clock, short tables
    bench.csv       the bench rows (moebench.results format: device, versions, date in every row)
    verify.csv      one row per parity check (and the gradient case)
    tune.csv        tuned vs default per kernel and bucket
    session.log     everything the session printed
    session.json    the manifest: device, versions, ceilings, the plan with estimates and actual times
    session.tar.gz  all of the above plus report/ (report.md, plots), configs/ (tuned configs, as
                    soon as each is written) and the pytest logs, under session/
`python -m moebench.session.unpack DIR` files what came back under results/ (see that module).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

from moebench.bench import ROW_COLUMNS
from moebench.results import ENV_FIELDS, write_rows

OUT_FILES = ("summary.md", "bench.csv", "verify.csv", "tune.csv", "session.log", "session.json", "session.tar.gz")
VERIFY_COLUMNS = ("step", "impl", "preset", "dtype", "T", "result", "rel_l2", "tol", "seed", "detail")
TUNE_COLUMNS = ("impl", "kernel", "preset", "dtype", "T", "status", "ms", "default_ms", "speedup", "tried",
                "rejected", "config", "detail")  # fmt: skip
ARCHIVE_ROOT = "session"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_csv(path: Path, rows: list[dict], columns: tuple[str, ...], env: dict) -> None:
    if rows:
        write_rows(path, [{**{f: env.get(f, "") for f in ENV_FIELDS}, **row} for row in rows])
    else:
        _write_text(path, ",".join((*columns, *ENV_FIELDS)) + "\n")


class Output:
    """Writes the session's files into `work` (the archive's contents) and copies them to `out`."""

    def __init__(self, out: Path, work: Path) -> None:
        self.out, self.work = Path(out), Path(work)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_path = self.work / "session.log"
        self.log_path.write_text("")

    def log(self, line: str) -> None:
        print(line, flush=True)
        with open(self.log_path, "a") as fh:
            fh.write(line + "\n")

    def write(self, ctx, summary: str, manifest: dict) -> None:
        """Every file, complete: into work/, then copied to out/ and packed into the archive."""
        env = {f: ctx.manifest.get(f, "") for f in ENV_FIELDS}
        _write_csv(self.work / "bench.csv", ctx.bench_rows, (*ROW_COLUMNS,), env)
        _write_csv(self.work / "verify.csv", ctx.verify_rows, VERIFY_COLUMNS, env)
        _write_csv(self.work / "tune.csv", ctx.tune_rows, TUNE_COLUMNS, env)
        _write_text(self.work / "summary.md", summary)
        _write_text(self.work / "session.json", json.dumps(manifest, indent=1, default=str) + "\n")
        for name in OUT_FILES[:-1]:
            tmp = self.out / f".{name}.tmp"
            shutil.copyfile(self.work / name, tmp)
            os.replace(tmp, self.out / name)
        self._pack()

    def _pack(self) -> None:
        tmp = self.out / ".session.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(self.work.rglob("*")):
                if path.is_file() and not path.name.endswith(".tmp"):
                    tar.add(path, arcname=f"{ARCHIVE_ROOT}/{path.relative_to(self.work).as_posix()}")
        os.replace(tmp, self.out / OUT_FILES[-1])
