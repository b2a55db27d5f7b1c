"""`moebench tune` end to end on the CPU with the fake tunable implementation (virtual timings)."""

import json

import pytest
import test_tuning_fake_impl as fake
from test_tuning_fake_impl import IMPL, TINY, installed

from moebench.cli import main
from moebench.parity import compare
from moebench.reference import reference_moe
from moebench.tuning import cache, lookup_config, trial, tuner
from moebench.tuning.device import device_info
from moebench.weights import random_inputs, random_weights


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch) as folders:
        yield folders


PLANTED = (fake.DROPS_LAST_CHUNK, fake.SCALES_OUTPUT)


def run_tune(out_dir, buckets=(1, 8, 64), **kwargs):
    kwargs.setdefault("max_configs", 40)
    return tuner.tune(
        [TINY], impls=[IMPL], buckets=list(buckets), device="cpu", out_dir=out_dir, progress=False, **kwargs
    )


def recorded(out_dir, kernel="ffn") -> dict:
    path = cache.config_path(out_dir, device_info("cpu").key, IMPL, kernel, TINY)
    return json.loads(path.read_text())


def timed_tokens() -> set[int]:
    return {tokens for tokens, _ in fake.CALLS}


def test_tuning_writes_one_file_per_kernel_that_lookups_use(dirs):
    out = dirs["user"]
    rows = run_tune(out)
    assert {(r.kernel, r.bucket, r.status) for r in rows} == {
        ("ffn", 1, "tuned"), ("ffn", 8, "tuned"), ("ffn", 64, "tuned"),
        ("decode", 1, "tuned"), ("decode", 8, "tuned"), ("decode", 64, "skipped"),
    }  # fmt: skip
    ffn = recorded(out)
    assert ffn["meta"]["impl"] == IMPL and ffn["meta"]["device"]["key"] == "cpu-interpreter"
    assert {"torch", "triton", "date", "space_hash", "command", "spec"} <= set(ffn["meta"])
    assert list(ffn["buckets"]) == ["1", "8", "64"]
    for entry in ffn["buckets"].values():
        assert {"config", "ms", "default_ms", "candidates_tried"} <= set(entry)
        assert entry["ms"] <= entry["default_ms"]
    assert list(recorded(out, "decode")["buckets"]) == ["1", "8"], "decode does not run at T=64"
    assert lookup_config(IMPL, "ffn", TINY, 50, "cpu") == ffn["buckets"]["64"]["config"]


def test_planted_fastest_wrong_configs_are_never_chosen(dirs):
    rows = run_tune(dirs["user"])
    timed = [cfg for _, cfg in fake.CALLS]
    for planted in PLANTED:
        assert planted in timed, "the planted configs must have been timed for this test to mean anything"
    ffn_rows = [r for r in rows if r.kernel == "ffn"]
    for row in ffn_rows:
        assert row.config not in PLANTED and row.config != fake.RAISES
        assert row.rejected >= 3, "two planted configs and the raising one"
    weights = random_weights(TINY, seed=7)
    for row in ffn_rows:
        x = random_inputs(TINY, 37, seed=8)
        out = fake.fake_tunable(x, weights, config={"ffn": row.config})
        assert compare(out, reference_moe(x, weights), TINY.dtype).ok
    for entry in recorded(dirs["user"])["buckets"].values():
        assert entry["config"] not in PLANTED


def test_a_second_run_reuses_the_file_without_timing(dirs):
    out = dirs["user"]
    run_tune(out)
    before = recorded(out)
    fake.CALLS.clear()
    rows = run_tune(out)
    assert fake.CALLS == []
    assert {r.status for r in rows} == {"recorded", "skipped"}
    assert recorded(out) == before


def test_force_retunes(dirs):
    out = dirs["user"]
    run_tune(out, buckets=(1,))
    fake.CALLS.clear()
    rows = run_tune(out, buckets=(1,), force=True)
    assert timed_tokens() == {1, 2}, "T=1 timed, checked at T=1 and T=2"
    assert {r.status for r in rows} == {"tuned"}


def test_an_interrupted_run_resumes_where_it_stopped(dirs, monkeypatch):
    out = dirs["user"]
    real_record = cache.record_buckets
    written = []

    def dies_after_two_buckets(path, sig, meta, entries):
        if len({b for b, _ in written}) == 2 and next(iter(entries)) not in {b for b, _ in written}:
            raise RuntimeError("simulated kill")
        written.append((next(iter(entries)), sig.kernel))
        real_record(path, sig, meta, entries)

    monkeypatch.setattr(cache, "record_buckets", dies_after_two_buckets)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_tune(out, buckets=(1, 8, 16, 64))
    monkeypatch.setattr(cache, "record_buckets", real_record)
    assert list(recorded(out)["buckets"]) == ["1", "8"]
    fake.CALLS.clear()
    rows = run_tune(out, buckets=(1, 8, 16, 64))
    assert timed_tokens() == {16, 19, 64, 73}, "only the missing buckets (and their check counts) run"
    assert list(recorded(out)["buckets"]) == ["1", "8", "16", "64"]
    assert {(r.bucket, r.status) for r in rows if r.kernel == "ffn"} == {
        (1, "recorded"),
        (8, "recorded"),
        (16, "tuned"),
        (64, "tuned"),
    }


def test_a_kernel_with_no_passing_config_fails_and_records_nothing(dirs, monkeypatch):
    monkeypatch.setattr(trial.ForwardCheck, "__call__", lambda self, config: "parity: always wrong")
    rows = run_tune(dirs["user"], buckets=(8,))
    assert {r.status for r in rows} == {"failed"}
    assert all("no config passed the parity check" in r.detail for r in rows)
    assert not any(dirs["user"].rglob("*.json"))


def test_a_failing_reference_fails_the_job_not_the_configs(dirs, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(trial, "expected_output", out_of_memory)
    rows = run_tune(dirs["user"], buckets=(8,))
    assert {r.status for r in rows} == {"failed"}
    assert all("fp64 reference failed" in r.detail and "simulated" in r.detail for r in rows)
    assert fake.CALLS == [], "nothing is timed when nothing could be checked"


def test_inactive_kernels_are_skipped_and_stay_skipped_on_resume(dirs):
    from moebench.tuning.space import register_tunable, unregister_tunable

    unregister_tunable(IMPL, "decode")
    register_tunable(
        IMPL,
        "decode",
        space=fake.decode_space,
        default=lambda spec, t: {"SPLIT": 1},
        active=lambda configs: configs["ffn"]["BLOCK_T"] != 4,  # the tuned ffn has BLOCK_T=4
    )
    rows = run_tune(dirs["user"], buckets=(8,))
    (decode,) = [r for r in rows if r.kernel == "decode"]
    assert decode.status == "skipped" and "does not run" in decode.detail
    fake.CALLS.clear()
    rows = run_tune(dirs["user"], buckets=(8,))
    assert fake.CALLS == []
    assert {(r.kernel, r.status) for r in rows} == {("ffn", "recorded"), ("decode", "skipped")}


def test_backward_kernels_are_timed_with_backward_and_checked_by_gradients(dirs):
    fake.install_backward()
    rows = run_tune(dirs["user"], buckets=(8,))
    (bwd,) = [r for r in rows if r.kernel == "bwd"]
    assert bwd.status == "tuned", bwd.detail
    assert bwd.config == {"SPLIT": 1, "GRAD_SCALE": 1.0}, "the planted wrong gradient (fastest) is rejected"
    assert bwd.rejected == 1
    entry = recorded(dirs["user"], "bwd")["buckets"]["8"]
    assert entry["timed"] == "forward+backward"


def test_max_configs_caps_each_search(dirs):
    rows = run_tune(dirs["user"], buckets=(64,), max_configs=4)
    (ffn,) = [r for r in rows if r.kernel == "ffn"]
    assert ffn.tried == 4
    assert recorded(dirs["user"])["buckets"]["64"]["stopped_by"] == "max-configs"


def test_cli_tune_writes_and_summarises(dirs, capsys):
    out = dirs["user"] / "cli"
    argv = ["tune", "--shape", "4,2,32,48", "--dtype", "fp32", "--impl", IMPL, "--tokens", "1,60"]
    argv += ["--device", "cpu", "--out-dir", str(out), "--no-progress", "--max-configs", "12"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "tuned" in text and "speedup" in text and str(out) in text
    assert list(recorded(out)["buckets"]) == ["1", "64"]
    assert main(argv) == 0
    assert "recorded" in capsys.readouterr().out


def test_cli_tune_rejects_bad_arguments(dirs, capsys):
    assert main(["tune", "--device", "cpu"]) == 2
    assert "--preset/--shape" in capsys.readouterr().err
    assert main(["tune", "--preset", "tiny", "--impl", "naive_loop", "--device", "cpu"]) == 2
    assert "no tunable kernels" in capsys.readouterr().err
    assert main(["tune", "--preset", "tiny", "--impl", IMPL, "--device", "cpu", "--max-configs", "0"]) == 2


@pytest.mark.slow
def test_local_worker_processes_write_the_same_files(dirs):
    """--gpus 2 on a CPU machine: two spawned interpreter workers (the per-GPU path without GPUs).
    Workers time for real (the virtual timer is this process's), parity still decides."""
    out = dirs["user"]
    rows = run_tune(out, buckets=(1, 64), gpus=2, max_configs=12, worker_setup=(fake.SETUP,))
    assert {(r.kernel, r.bucket, r.status) for r in rows} == {
        ("ffn", 1, "tuned"), ("ffn", 64, "tuned"), ("decode", 1, "tuned"), ("decode", 64, "skipped"),
    }, [r.detail for r in rows]  # fmt: skip
    assert list(recorded(out)["buckets"]) == ["1", "64"]
    assert fake.CALLS == [], "the layer ran in the workers, not here"
    for entry in recorded(out)["buckets"].values():
        assert entry["config"] not in PLANTED
