"""The Ray path: a local Ray instance on the CPU (2 CPUs, no dashboard) runs the jobs as tasks
and the tune process writes the same config files as an in-process run."""

import json

import pytest
import test_tuning_fake_impl as fake
from test_tuning_fake_impl import IMPL, TINY, installed

from moebench.tuning import cache, tuner
from moebench.tuning.device import device_info

ray = pytest.importorskip("ray")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch) as folders:
        yield folders


def tune(out_dir, **kwargs):
    return tuner.tune(
        [TINY], impls=[IMPL], buckets=[1, 64], device="cpu", out_dir=out_dir, progress=False, max_configs=12, **kwargs
    )


def files(out_dir) -> dict:
    return {p.name: json.loads(p.read_text()) for p in sorted(out_dir.rglob("*.json"))}


@pytest.mark.slow
def test_ray_local_cluster_writes_the_same_cache_as_a_local_run(dirs):
    local_dir, ray_dir = dirs["user"] / "local", dirs["user"] / "ray"
    tune(local_dir)
    assert not ray.is_initialized()
    rows = tune(ray_dir, ray_address="local", worker_setup=(fake.SETUP,))
    assert not ray.is_initialized(), "the Ray instance tune started is shut down again"
    assert {(r.kernel, r.bucket, r.status) for r in rows} == {
        ("ffn", 1, "tuned"), ("ffn", 64, "tuned"), ("decode", 1, "tuned"), ("decode", 64, "skipped"),
    }, [r.detail for r in rows]  # fmt: skip

    local, remote = files(local_dir), files(ray_dir)
    assert local.keys() == remote.keys()
    for name, data in remote.items():
        assert data["buckets"].keys() == local[name]["buckets"].keys()
        assert data["meta"]["space_hash"] == local[name]["meta"]["space_hash"]
        assert data["meta"]["device"]["key"] == "cpu-interpreter", "keyed by where the timing ran"
        for entry in data["buckets"].values():
            assert entry["config"] not in (fake.DROPS_LAST_CHUNK, fake.SCALES_OUTPUT, fake.RAISES)
    assert cache.config_path(ray_dir, device_info("cpu").key, IMPL, "ffn", TINY).is_file()
