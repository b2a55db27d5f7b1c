"""The MODEL table command: its rows, labels and inputs (small presets, so it runs in a second)."""

from __future__ import annotations

import csv

import pytest

from moebench.ep import Links
from moebench.ep.table import SOURCE, main, model_rows


def test_rows_label_the_model_and_leave_out_impossible_sizes():
    rows = model_rows(("tiny-many",), eps=(2, 4, 32), tokens_per_rank=64, zipf_s=1.5)
    assert len(rows) == 2 * 3 * 2  # routings x EP sizes x (without, with) redundant copies
    assert all(r["source"] == SOURCE and r["source"].startswith("MODEL") for r in rows)
    assert all(r["intra_gbps_per_direction"] == 450.0 and r["inter_gbps_per_direction"] == 50.0 for r in rows)
    impossible = [r for r in rows if r["ep"] == 32]
    assert impossible and all(r["note"].startswith("n/a") and r["all_to_all_ms"] == "" for r in impossible)
    done = [r for r in rows if r["ep"] != 32]
    assert all(r["all_to_all_ms"] > 0 and r["imbalance"] >= 1.0 and r["note"] == "" for r in done)
    assert all(r["inter_node_fraction"] == 0.0 for r in done)  # 2 and 4 ranks fit one node of 8
    zipf = {(r["ep"], r["redundant_per_rank"]): r for r in done if r["routing"] == "zipf"}
    assert all(zipf[(ep, 1)]["imbalance"] <= zipf[(ep, 0)]["imbalance"] for ep in (2, 4))
    assert all(r["zipf_s"] == 1.5 for r in zipf.values())


def test_links_are_per_direction_nvlink_halved():
    assert Links().intra_gbps == 450.0 and Links().inter_gbps == 50.0 and Links().gpus_per_node == 8


def test_command_writes_csv_and_markdown_with_inputs(tmp_path, capsys):
    main(["--out", str(tmp_path), "--presets", "tiny,tiny-many", "--ep", "2,8", "--tokens", "32"])
    assert "MODEL" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "ep-model.csv").open()))
    assert {r["preset"] for r in rows} == {"tiny", "tiny-many"} and all(r["command"] and r["date"] for r in rows)
    text = (tmp_path / "ep-model.md").read_text()
    for phrase in ("MODEL", "PER DIRECTION", "450 GB/s", "32 tokens per rank", "n/a: E=4 < P=8", "s = 1.2"):
        assert phrase in text, phrase


def test_bad_ep_size_is_an_argparse_error():
    with pytest.raises(SystemExit):
        main(["--ep", "x"])
