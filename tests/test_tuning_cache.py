"""The config cache: lookups, the fallback chain, bad files, folders, pins, atomic writes."""

import glob
import json
import os
import pathlib
import warnings

import pytest
from test_tuning_fake_impl import IMPL, TINY, installed

from moebench.errors import MoEInputError
from moebench.tuning import PIN_ENV, cache, files, resolve_config
from moebench.tuning.device import device_info
from moebench.tuning.space import tunable


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch) as folders:
        yield folders


SMALL = {"BLOCK_T": 2, "num_warps": 2}
LARGE = {"BLOCK_T": 8, "num_warps": 8}
DEFAULT = {"BLOCK_T": 16, "num_warps": 4}


def ffn_path(root, triton=None):
    return cache.config_path(root, device_info("cpu").key, IMPL, "ffn", TINY, triton)


def write(path, buckets: dict) -> pathlib.Path:
    sig = cache.signature(tunable(IMPL, "ffn"), TINY)
    meta = files.run_meta(device_info("cpu").as_dict(), "test")
    entries = {b: {"config": c, "ms": 1.0, "default_ms": 2.0, "candidates_tried": 3} for b, c in buckets.items()}
    cache.record_buckets(path, sig, meta, entries)
    return path


def edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    cache.clear_memo()


def lookup(tokens=4):
    return cache.lookup(IMPL, "ffn", TINY, tokens, "cpu")


def test_lookup_picks_the_nearest_recorded_bucket(dirs):
    path = write(ffn_path(dirs["user"]), {1: SMALL, 64: LARGE})
    assert path.name == f"{IMPL}__ffn__E4-k2-H32-I48-swiglu-fp32__triton-{cache.triton_version()}.json"
    assert [lookup(t) for t in (0, 1, 7, 8, 40, 1000)] == [SMALL, SMALL, SMALL, LARGE, LARGE, LARGE]
    assert resolve_config(IMPL, "ffn", TINY, 40, "cpu") == LARGE


def test_lookups_touch_no_file_after_the_first(dirs, monkeypatch):
    write(ffn_path(dirs["user"]), {1: SMALL, 64: LARGE})
    assert lookup(1) == SMALL

    def no_filesystem(*args, **kwargs):
        raise AssertionError("file system touched by a cached lookup")

    for name in ("read_text", "is_file", "is_dir", "exists", "resolve"):
        monkeypatch.setattr(pathlib.Path, name, no_filesystem)
    monkeypatch.setattr(glob, "glob", no_filesystem)
    monkeypatch.setattr(os, "stat", no_filesystem)
    for tokens in (1, 2, 100, 5000):
        assert lookup(tokens) in (SMALL, LARGE)
    returned = lookup(1)
    returned["BLOCK_T"] = 99
    assert lookup(1) == SMALL, "callers get copies"


def test_nothing_tuned_means_the_default(dirs):
    assert lookup() is None
    assert resolve_config(IMPL, "ffn", TINY, 4, "cpu") == DEFAULT


@pytest.mark.parametrize(
    "content",
    ['{"format": 1, "meta": {', "", "\x00\x01 not json", "[1, 2, 3]", '{"format": 1, "meta": {}, "buckets": []}'],
)
def test_a_corrupt_file_warns_and_falls_back(dirs, content):
    path = ffn_path(dirs["user"])
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.warns(cache.TuningCacheWarning, match="ignored"):
        assert resolve_config(IMPL, "ffn", TINY, 4, "cpu") == DEFAULT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["meta"].update(space_hash="0000"), "stale: tuned against search space"),
        (lambda d: d["buckets"]["1"]["config"].update(BLOCK_Q=1), "unknown parameters"),
        (lambda d: d["buckets"]["1"]["config"].pop("num_warps"), "lacks parameters"),
        (lambda d: d["meta"].update(kernel="down"), "meta names"),
        (lambda d: d["meta"]["spec"].update(hidden=64), "meta.spec"),
        (lambda d: d.update(format=99), "format"),
        (lambda d: d["buckets"].update({"-3": d["buckets"]["1"]}), "positive token count"),
        (lambda d: d["buckets"]["1"]["config"].update(BLOCK_T=[1, 2]), "numbers, strings or booleans"),
    ],
)
def test_a_stale_or_inconsistent_file_warns_and_falls_back(dirs, change, message):
    path = write(ffn_path(dirs["user"]), {1: SMALL})
    edit(path, change)
    with pytest.warns(cache.TuningCacheWarning, match=message):
        assert lookup(1) is None


def test_a_bad_user_file_falls_back_to_the_shipped_one(dirs):
    write(ffn_path(dirs["shipped"]), {1: LARGE})
    bad = ffn_path(dirs["user"])
    bad.parent.mkdir(parents=True)
    bad.write_text("{broken")
    with pytest.warns(cache.TuningCacheWarning, match="ignored"):
        assert lookup(1) == LARGE


def test_the_user_folder_overrides_the_shipped_one(dirs, monkeypatch):
    write(ffn_path(dirs["shipped"]), {1: LARGE})
    assert lookup(1) == LARGE
    write(ffn_path(dirs["user"]), {1: SMALL})
    assert lookup(1) == SMALL
    monkeypatch.delenv(cache.CONFIG_DIR_ENV)
    assert lookup(1) == LARGE, "without MOEBENCH_CONFIG_DIR only the shipped folder counts"


def test_another_triton_versions_file_is_used_with_a_warning(dirs):
    write(ffn_path(dirs["shipped"], triton="3.0.0"), {1: LARGE})
    write(ffn_path(dirs["shipped"], triton="2.9.9"), {1: SMALL})
    with pytest.warns(cache.TuningCacheWarning, match="no configs tuned under Triton"):
        assert lookup(1) == LARGE, "the newest other version wins"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(1) == LARGE, "warned once per key"
    write(ffn_path(dirs["shipped"]), {1: SMALL})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(1) == SMALL, "the exact version is preferred, silently"
    assert cache.lookup_source(IMPL, "ffn", TINY, "cpu")[0] == "tuned"


def test_untuned_keys_warn_once_on_devices_that_expect_tuning(dirs, monkeypatch):
    monkeypatch.setattr(cache, "WARN_UNTUNED_DEVICE_TYPES", {"cpu"})
    with pytest.warns(cache.TuningCacheWarning, match="no tuned config"):
        assert lookup(1) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lookup(2) is None
    assert cache.lookup_source(IMPL, "ffn", TINY, "cpu") == ("default", None)


def test_pinned_config_beats_the_cache_and_explicit_beats_the_pin(dirs, monkeypatch):
    write(ffn_path(dirs["user"]), {1: SMALL})
    monkeypatch.setenv(PIN_ENV, json.dumps({"ffn": LARGE}))
    assert resolve_config(IMPL, "ffn", TINY, 1, "cpu") == LARGE
    monkeypatch.setenv(PIN_ENV, json.dumps({f"{IMPL}/ffn": {"BLOCK_T": 1, "num_warps": 1}, "ffn": LARGE}))
    assert resolve_config(IMPL, "ffn", TINY, 1, "cpu") == {"BLOCK_T": 1, "num_warps": 1}
    assert resolve_config(IMPL, "ffn", TINY, 1, "cpu", explicit={"ffn": DEFAULT}) == DEFAULT
    assert resolve_config(IMPL, "decode", TINY, 1, "cpu") == {"SPLIT": 1}, "unpinned kernels are untouched"
    monkeypatch.setenv(PIN_ENV, "{not json")
    with pytest.raises(MoEInputError, match=PIN_ENV):
        resolve_config(IMPL, "ffn", TINY, 1, "cpu")


def test_writes_merge_buckets_and_replace_an_unusable_file(dirs):
    path = write(ffn_path(dirs["user"]), {1: SMALL})
    write(path, {64: LARGE})
    data = json.loads(path.read_text())
    assert list(data["buckets"]) == ["1", "64"]
    assert data["meta"]["space_hash"] == cache.signature(tunable(IMPL, "ffn"), TINY).space_hash
    path.write_text("{garbage")
    with pytest.warns(cache.TuningCacheWarning, match="replacing"):
        write(path, {8: LARGE})
    assert list(json.loads(path.read_text())["buckets"]) == ["8"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(dirs, monkeypatch):
    path = write(ffn_path(dirs["user"]), {1: SMALL})
    before = path.read_text()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        write(path, {64: LARGE})
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_the_shipped_folder_is_the_checkouts_results_configs():
    root = pathlib.Path(__file__).resolve().parents[1]
    assert files.shipped_config_dir.__wrapped__() == root / "results" / "configs"


def test_tune_needs_an_output_folder_when_there_is_no_checkout(monkeypatch):
    from moebench.tuning.tuner import resolve_out_dir

    monkeypatch.delenv(cache.CONFIG_DIR_ENV, raising=False)
    monkeypatch.setattr(files, "shipped_config_dir", lambda: None)
    with pytest.raises(MoEInputError, match="--out-dir"):
        resolve_out_dir(None)
    monkeypatch.setenv(cache.CONFIG_DIR_ENV, "/somewhere")
    assert resolve_out_dir(None) == pathlib.Path("/somewhere")
    assert resolve_out_dir("/elsewhere") == pathlib.Path("/elsewhere")
