"""`moebench bench --ep P`: a run on 2 gloo ranks writes EP rows whose bytes are the traffic model's,
and the --ep options are refused without --ep."""

from __future__ import annotations

import csv

import pytest

from moebench.cli import main


def test_bench_ep_2_writes_rows_with_the_split_bytes_and_imbalance(tmp_path, capsys):
    out = tmp_path / "ep.csv"
    argv = ["bench", "--ep", "2", "--device", "cpu", "--preset", "tiny-shared", "--tokens", "1,5"]
    argv += ["--routing", "zipf", "--zipf-s", "1.5", "--reps", "2", "--warmup", "1", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "routing zipf (s=1.5)" in text and "dispatch" in text and "imbalance" in text
    rows = list(csv.DictReader(out.open()))
    assert [(r["T"], r["ep"], r["routing"], r["zipf_s"], r["status"]) for r in rows] == [
        ("1", "2", "zipf", "1.5", "ok"),
        ("5", "2", "zipf", "1.5", "ok"),
    ]
    for row in rows:
        assert row["impl"] == "grouped_mm" and row["method"].startswith("per-phase")
        assert row["dispatch_bytes_max"] == row["model_dispatch_bytes_max"]
        assert row["combine_bytes_max"] == row["model_combine_bytes_max"]
        assert float(row["imbalance"]) >= 1.0
        assert all(float(row[f"{p}_ms"]) >= 0 for p in ("dispatch", "compute", "combine"))
    assert int(rows[1]["dispatch_bytes_max"]) > 0 and rows[1]["torch"] and rows[1]["command"].startswith("moebench")


@pytest.mark.parametrize(
    "extra, argument",
    [(["--routing", "zipf"], "--routing"), (["--redundant", "1"], "--redundant"), (["--ep", "0"], "--ep")],
)
def test_ep_options_without_ep_are_one_clear_error(tmp_path, capsys, extra, argument):
    assert main(["bench", "--device", "cpu", "--preset", "tiny", "--out", str(tmp_path / "x.csv"), *extra]) == 2
    assert argument in capsys.readouterr().err
