"""The two sides of the A/B performance gate: install a baseline revision and the current tree
side by side, then time them alternately in fresh processes (the verdict: moebench/regression.py).

Why each side is installed rather than put on PYTHONPATH: moebench maps subpackages to other
folders (moebench.kernels -> kernels/, moebench.export -> export/) and the development install is
editable, so a checkout on PYTHONPATH would give the checkout's moebench but the editable install's
(the current tree's) kernels. Each side is instead built by its own revision's packaging and
installed with `pip install --no-deps --target` into its own folder, which goes first on
PYTHONPATH. The benchmark run records the file of every moebench module it imported
(tests/benchmarks/conftest.py) and a run that used any other file is refused.

The baseline's source is a detached `git worktree` of the revision, removed once installed; the
current tree's is a copy of the working tree as git sees it (tracked and untracked files, not the
ignored ones), so a build never writes into, or picks up stale build/ files from, the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path("tests/benchmarks")  # the harness, relative to a tree
# per process: every case in PASSES passes over the list, each pass MIN_ROUNDS rounds at least and
# about MAX_TIME s of CPU time (more rounds only while under it), about 20 s of CPU for the CI set
PASSES, MIN_ROUNDS, MAX_TIME = 3, 3, 0.2
ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class GateError(RuntimeError):
    """The gate could not measure (missing revision, failed build or run): never a pass."""


@dataclass(frozen=True)
class Side:
    name: str  # "baseline" or "current"
    source: str  # the revision, or "working tree"
    lib: Path  # the folder moebench is installed in
    plugins: tuple[Path, ...] = ()  # pytest plugin files loaded on this side only (tests inject with these)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode:
        raise GateError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def read_ref(path: Path) -> str:
    """The revision named in a BASELINE_REF file: its first line that is neither blank nor a # comment."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except OSError as exc:
        raise GateError(f"{path}: cannot read the baseline revision ({exc})") from None
    refs = [line for line in lines if line and not line.startswith("#")]
    if not refs:
        raise GateError(f"{path}: names no revision")
    return refs[0]


def resolve(repo: Path, ref: str) -> str:
    """The full commit id of `ref`; a clear GateError when this clone does not have it."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GateError:
        pass
    try:
        shallow = git(repo, "rev-parse", "--is-shallow-repository") == "true"
    except GateError as exc:
        raise GateError(f"baseline revision {ref!r}: {repo} is not a git checkout ({exc})") from None
    hint = "this clone is shallow: `git fetch --unshallow`" if shallow else "fetch it, or fix BASELINE_REF"
    raise GateError(f"baseline revision {ref!r} is not in this clone ({hint}); the gate cannot measure without it")


def copy_working_tree(repo: Path, dest: Path) -> None:
    """Tracked and untracked files of the working tree, without the ignored ones (venvs, build/, out/)."""
    listed = git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in filter(None, listed.split("\0")):
        src = repo / rel
        if src.is_file():  # deleted-but-tracked files are skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def install(source: Path, lib: Path) -> None:
    """Build `source` with its own packaging and install it (no dependencies) into `lib`."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(lib)]
    done = subprocess.run([*cmd, str(source)], capture_output=True, text=True)
    if done.returncode:
        raise GateError(f"installing {source} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def prepare(repo: Path, ref: str, workdir: Path) -> tuple[Side, Side, Path]:
    """(baseline side, current side, harness tree): both libraries installed under `workdir`."""
    sha = resolve(repo, ref)
    checkout, harness = workdir / "baseline-src", workdir / "current-src"
    git(repo, "worktree", "add", "--detach", "--quiet", str(checkout), sha)
    try:
        install(checkout, workdir / "baseline-lib")
    finally:
        git(repo, "worktree", "remove", "--force", str(checkout))
    copy_working_tree(repo, harness)
    install(harness, workdir / "current-lib")
    baseline = Side("baseline", sha, workdir / "baseline-lib")
    return baseline, Side("current", "working tree", workdir / "current-lib"), harness


def check_origin(side: Side, run: dict) -> None:
    """Refuse a run in which any moebench module came from outside the side's own install."""
    modules = run.get("moebench_modules") or {}
    lib = side.lib.resolve()
    strays = {name: f for name, f in modules.items() if f and not Path(f).resolve().is_relative_to(lib)}
    if "moebench" not in modules or strays:
        raise GateError(f"{side.name} side did not run its own library ({lib}): {strays or 'moebench not imported'}")


def side_env(side: Side) -> dict[str, str]:
    """The environment of a side's processes: its library first on PYTHONPATH, one thread everywhere,
    and the Triton interpreter on (everything is timed on CPU tensors, where Triton kernels run only
    in the interpreter; it must be set before moebench.kernels is imported)."""
    env = dict(os.environ, **dict.fromkeys(ONE_THREAD, "1"), TRITON_INTERPRET="1")
    for name in [n for n in env if n.startswith("PYTEST_")]:  # e.g. an xdist worker's: pytest-benchmark
        del env[name]  # would take the gate's process for an xdist worker and disable timing
    paths = [str(side.lib), *(str(p.parent) for p in side.plugins), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def run_side(
    side: Side, harness: Path, json_path: Path, *, cases=None, passes=PASSES, min_rounds=MIN_ROUNDS, max_time=MAX_TIME
) -> dict:
    """One fresh pytest process timing the harness's benchmarks against `side`'s library."""
    cmd = [sys.executable, "-m", "pytest", str(harness / BENCHMARKS), "-c", str(harness / "pyproject.toml")]
    # --confcutdir: only tests/benchmarks' own conftest, not the suite's (which may import what a baseline lacks)
    cmd += ["--rootdir", str(harness), "--confcutdir", str(harness / BENCHMARKS), "-q", "-m", "benchmark_gate"]
    cmd += ["-p", "no:cacheprovider", "-p", "no:randomly"]
    cmd += ["--benchmark-enable", "--benchmark-only", "--benchmark-disable-gc", f"--benchmark-json={json_path}"]
    cmd += [f"--gate-passes={passes}", f"--benchmark-min-rounds={min_rounds}", f"--benchmark-max-time={max_time}"]
    cmd += [f"--gate-cases={','.join(cases)}"] if cases else []
    for plugin in side.plugins:
        cmd += ["-p", plugin.stem]
    # the working directory is on sys.path under `python -m`: an empty one, never a tree with moebench/ in it
    cwd = json_path.parent / f".{side.name}-cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    json_path.unlink(missing_ok=True)
    done = subprocess.run(cmd, cwd=cwd, env=side_env(side), capture_output=True, text=True)
    if done.returncode:
        hint = " (if the public API changed, move BASELINE_REF)" if side.name == "baseline" else ""
        output = (done.stdout + done.stderr)[-4000:]
        raise GateError(f"{side.name} side's benchmark run failed (exit {done.returncode}){hint}:\n{output}")
    if not json_path.exists():  # pytest-benchmark writes none when every case was skipped
        return {"benchmarks": []}
    run = json.loads(json_path.read_text())
    check_origin(side, run)
    return run


def alternate(sides: list[Side], harness: Path, out: Path, alternations: int, **settings) -> dict[str, list[dict]]:
    """Each side in turn, `alternations` times over (baseline, current, baseline, current ...), each
    run a fresh process; returns every side's pytest-benchmark JSON runs by side name (files in `out`)."""
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {side.name: [] for side in sides}
    for i in range(1, alternations + 1):
        for side in sides:
            started = time.monotonic()
            run = run_side(side, harness, out / f"{side.name}-{i}.json", **settings)
            runs[side.name].append(run)
            took = time.monotonic() - started
            print(f"  {side.name} {i}/{alternations}: {len(run['benchmarks'])} benchmarks, {took:.0f} s", flush=True)
    return runs
