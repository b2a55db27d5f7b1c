"""The A/B performance gate (moebench/regression.py, moebench/regression_sides.py).

Verdict logic on synthetic pytest-benchmark JSON (nothing is timed), git handling on throwaway
repositories, and the real gate end to end on a tiny benchmark set (marked slow, a few minutes): a
copy of this tree committed as the baseline against its own working tree passes three runs in a
row; with grouped_mm really running twice on the current side it fails three runs in a row, and an
implementation only the current side has is reported as new.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from alone import alone

from moebench import regression
from moebench.regression_sides import (
    GateError,
    Side,
    alternate,
    check_origin,
    copy_working_tree,
    prepare,
    read_ref,
    resolve,
    side_env,
)

ROOT = Path(__file__).resolve().parents[1]
INJECT = ROOT / "tests" / "benchmarks" / "inject"
BASE = {"naive_loop/small-8x2/T16": 4e-3, "padded_batch/small-8x2/T16": 5e-3, "grouped_mm/small-8x2/T16": 3e-3}


def bench_run(times: dict[str, float]) -> dict:
    """One process's pytest-benchmark JSON, as the harness writes it (extra_info key, stats)."""
    return {
        "benchmarks": [{"name": f"test[{k}]", "extra_info": {"key": k}, "stats": {"min": t}} for k, t in times.items()]
    }


def scaled(times: dict[str, float], prefix: str, factor: float) -> dict[str, float]:
    return {k: t * factor if k.startswith(prefix) else t for k, t in times.items()}


def test_unchanged_passes_and_2x_of_one_implementation_fails():
    same = regression.compare([bench_run(BASE)] * 3, [bench_run(BASE)] * 3)
    assert same.ok and {r.ratio for r in same.rows} == {1.0}
    slow = regression.compare([bench_run(BASE)] * 3, [bench_run(scaled(BASE, "grouped_mm", 2))] * 3)
    assert slow.failures == ["grouped_mm/small-8x2/T16"]
    assert "SLOWER: FAIL" in regression.format_verdict(slow) and "A/B gate: FAIL" in regression.format_verdict(slow)


def test_best_over_the_alternations_of_each_side():
    burst = bench_run({k: 3 * t for k, t in BASE.items()})
    # a burst of load in one process of either side does not decide
    assert regression.compare([bench_run(BASE)] * 3, [burst, bench_run(BASE), bench_run(BASE)]).ok
    assert regression.compare([burst, bench_run(BASE), bench_run(BASE)], [bench_run(BASE)] * 3).ok
    # a real slowdown is in every process of the current side
    assert not regression.compare([bench_run(BASE)] * 3, [burst] * 3).ok


def test_threshold_edges():
    for factor, ok in ((0.99 * regression.THRESHOLD, True), (1.01 * regression.THRESHOLD, False)):
        verdict = regression.compare([bench_run(BASE)], [bench_run(scaled(BASE, "naive_loop", factor))])
        assert verdict.ok is ok, factor
    faster = regression.compare([bench_run(BASE)], [bench_run(scaled(BASE, "naive_loop", 0.5))])
    assert faster.ok and faster.rows[0].verdict(faster.threshold) == "faster"


def test_new_benchmark_is_reported_not_failed_gone_one_fails():
    more = dict(BASE, **{"new_impl/small-8x2/T16": 1e-3})
    verdict = regression.compare([bench_run(BASE)], [bench_run(more)])
    assert verdict.ok and verdict.new == ["new_impl/small-8x2/T16"]
    assert "new (not gated)" in regression.format_verdict(verdict)
    fewer = {k: t for k, t in BASE.items() if not k.startswith("grouped_mm")}
    verdict = regression.compare([bench_run(BASE)], [bench_run(fewer)])
    assert verdict.failures == ["grouped_mm/small-8x2/T16"] and "GONE: FAIL" in regression.format_verdict(verdict)


def test_unusable_input_is_an_error():
    with pytest.raises(GateError, match="threshold"):
        regression.compare([bench_run(BASE)], [bench_run(BASE)], threshold=1.0)
    with pytest.raises(GateError, match="no benchmark"):
        regression.compare([{"benchmarks": []}], [{"benchmarks": []}])
    with pytest.raises(GateError, match="positive"):
        regression.compare([bench_run({"a": 0.0})], [bench_run({"a": 1.0})])


def test_check_cli(tmp_path, capsys):
    paths = {}
    for name, times in (("base", BASE), ("same", BASE), ("slow", scaled(BASE, "padded_batch", 2))):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(bench_run(times)))
    check = ["check", "--baseline", str(paths["base"]), "--current"]
    assert regression.main([*check, str(paths["same"])]) == 0
    assert regression.main([*check, str(paths["slow"])]) == 1
    assert regression.main([*check, str(tmp_path / "none.json")]) == 2
    assert "A/B gate: FAIL" in capsys.readouterr().out


def test_readme_and_ci_commands_parse():
    readme = (ROOT / "README.md").read_text().split("**Performance regression gate", 1)[1].split("\n\n", 1)[0]
    spans = [" ".join(span.split()) for span in readme.split("`")[1::2]]  # README: commands in backticks
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ").splitlines()  # .ci/run: one per line
    prefix = "python -m moebench.regression"
    commands = [c[c.index(prefix) :].split("||")[0].strip() for c in spans + ci if prefix in c]
    assert len(commands) >= 3, commands
    for command in commands:
        regression.build_parser().parse_args(shlex.split(command)[3:])


def test_read_ref_skips_comments(tmp_path):
    (tmp_path / "REF").write_text("# moved when a change in speed is accepted\n\nabc123\n")
    assert read_ref(tmp_path / "REF") == "abc123"
    (tmp_path / "EMPTY").write_text("# nothing\n")
    with pytest.raises(GateError, match="names no revision"):
        read_ref(tmp_path / "EMPTY")


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=gate test", "-c", "user.email=gate@test", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *identity, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _commit_all(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def small_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "a.txt").write_text("1\n")
    _commit_all(repo, "one")
    (repo / "a.txt").write_text("2\n")
    _commit_all(repo, "two")
    return repo


def test_missing_revision_is_a_clear_error_not_a_pass(small_repo, tmp_path, capsys):
    assert resolve(small_repo, "HEAD~1") == _git(small_repo, "rev-parse", "HEAD~1").strip()
    with pytest.raises(GateError, match="not in this clone"):
        resolve(small_repo, "0123456789abcdef0123456789abcdef01234567")
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{small_repo}", str(shallow)], check=True)
    with pytest.raises(GateError, match="shallow"):
        resolve(shallow, _git(small_repo, "rev-parse", "HEAD~1").strip())
    with pytest.raises(GateError, match="not a git checkout"):
        resolve(tmp_path, "HEAD")
    assert regression.main(["run", "--repo", str(shallow), "--baseline-ref", "HEAD~1", "--out", str(tmp_path)]) == 2
    assert "not in this clone" in capsys.readouterr().err


def test_copy_working_tree_takes_uncommitted_and_untracked_files_not_ignored_ones(small_repo, tmp_path):
    (small_repo / "a.txt").write_text("uncommitted\n")
    (small_repo / "new.txt").write_text("untracked\n")
    (small_repo / "ignored").mkdir()
    (small_repo / "ignored" / "x.txt").write_text("build output\n")
    copy_working_tree(small_repo, tmp_path / "copy")
    assert (tmp_path / "copy" / "a.txt").read_text() == "uncommitted\n"
    assert (tmp_path / "copy" / "new.txt").exists() and not (tmp_path / "copy" / "ignored").exists()


def test_a_run_that_used_another_library_is_refused(tmp_path):
    side = Side("baseline", "abc", tmp_path / "baseline-lib")
    own = {"moebench": str(tmp_path / "baseline-lib" / "moebench" / "__init__.py")}
    check_origin(side, {"moebench_modules": own})
    stray = dict(own, **{"moebench.kernels": str(ROOT / "kernels" / "__init__.py")})
    with pytest.raises(GateError, match="did not run its own library"):
        check_origin(side, {"moebench_modules": stray})
    with pytest.raises(GateError, match="not imported"):
        check_origin(side, {"moebench_modules": {}})


def test_committed_baseline_revision_is_in_this_branchs_history():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the A/B gate needs the repository's history")
    sha = resolve(ROOT, read_ref(ROOT / regression.BASELINE_REF))
    _git(ROOT, "merge-base", "--is-ancestor", sha, "HEAD")  # raises when it is not an ancestor


# ---- the real gate, end to end, on a tiny benchmark set ----

TINY = ("grouped_mm/small-8x2/T16", "padded_batch/small-8x2/T16")
MARKER = "_gate_marker.py"


def _plugin(name: str):
    spec = importlib.util.spec_from_file_location(f"gate_inject_{name}", INJECT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mapped_kernels_dir() -> Path:
    """Where this install maps moebench.kernels (kernels/ in this layout), relative to the tree."""
    location = Path(importlib.util.find_spec("moebench.kernels").submodule_search_locations[0]).resolve()
    return location.relative_to(ROOT) if location.is_relative_to(ROOT) else Path("kernels")


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    """The module's timing runs with no other test on the machine (tests/alone.py, under pytest-xdist)."""
    with alone(tmp_path_factory):
        yield


@pytest.fixture(scope="module")
def gate(machine, tmp_path_factory):
    """(baseline, current, harness): a copy of this tree committed as the baseline revision, and
    its working tree as the current side; a marker module in moebench/ and in the folder mapped to
    moebench.kernels says which side a library came from, and the current tree's tests/conftest.py
    imports a module only the current library has."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the A/B gate needs git")
    tmp = tmp_path_factory.mktemp("ab")
    repo = tmp / "repo"
    copy_working_tree(ROOT, repo)
    markers = [repo / "moebench" / MARKER, repo / _mapped_kernels_dir() / MARKER]
    for side in ("baseline", "current"):
        for marker in markers:
            marker.write_text(f"SIDE = {side!r}\n")
        if side == "baseline":
            _git(repo, "init", "-q")
            _commit_all(repo, "baseline")
    # the suite's conftest may import what a baseline lacks: the harness must run without it
    (repo / "moebench" / "_gate_current_only.py").write_text("")
    conftest = repo / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + "\nimport moebench._gate_current_only  # noqa: E402, F401\n")
    return prepare(repo, "HEAD", tmp / "work")


@pytest.fixture(scope="module")
def three_runs(gate, tmp_path_factory):
    """Three runs of the gate, each alternating three sides: the baseline, the unchanged current
    tree, and the current tree with grouped_mm really running twice plus an implementation the
    baseline lacks (pytest plugins loaded on that side only). Each run gives two real verdicts,
    unchanged vs baseline and slowed vs baseline, from processes timed in the same alternation
    (a third fewer processes than two separate runs). Returns [(unchanged, slowed)] per run."""
    baseline, current, harness = gate
    slow, new = _plugin("slow_grouped_mm"), _plugin("new_impl")
    slowed = Side("slowed", current.source, current.lib, (Path(slow.__file__), Path(new.__file__)))
    cases = [*TINY, f"{new.NEW}/small-8x2/T16"]
    verdicts = []
    for attempt in range(3):
        out = tmp_path_factory.mktemp(f"run{attempt}")
        # one pass per process (CI's gate makes three): each process is mostly Python and torch start-up
        runs = alternate([baseline, current, slowed], harness, out, regression.MIN_ALTERNATIONS, cases=cases, passes=1)
        pair = [
            regression.compare(runs["baseline"], runs[side], regression.THRESHOLD) for side in ("current", "slowed")
        ]
        for verdict in pair:
            print(regression.format_verdict(verdict))
        verdicts.append(pair)
    return verdicts, slow.SLOWED, cases[-1]


@pytest.mark.slow
def test_each_side_imports_its_own_library(gate, tmp_path):
    code = "import moebench._gate_marker as a, moebench.kernels._gate_marker as b; print(a.SIDE, b.SIDE)"
    for side in gate[:2]:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=side_env(side), capture_output=True, text=True
        )
        assert done.stdout.split() == [side.name, side.name], done.stderr[-2000:]


@pytest.mark.slow
def test_unchanged_tree_passes_three_runs_in_a_row(three_runs):
    for unchanged, _ in three_runs[0]:
        assert unchanged.ok, regression.format_verdict(unchanged)
        assert [r.key for r in unchanged.rows] == list(TINY)  # the new case ran on neither side


@pytest.mark.slow
def test_real_2x_slowdown_fails_three_runs_in_a_row(three_runs):
    verdicts, slowed_impl, _ = three_runs
    for _, slowed in verdicts:
        assert slowed.failures == [f"{slowed_impl}/small-8x2/T16"], regression.format_verdict(slowed)


@pytest.mark.slow
def test_new_benchmark_is_reported_as_new_not_failed(three_runs):
    verdicts, _, new_case = three_runs
    for _, slowed in verdicts:
        assert slowed.new == [new_case] and new_case not in slowed.failures
        row = next(r for r in slowed.rows if r.key == new_case)
        assert row.verdict(slowed.threshold) == "new (not gated)"
        assert "new (not gated)" in regression.format_verdict(slowed)
