"""Compiling the search's first candidates ahead of their timing (moebench.tuning.precompile).

On the CPU nothing compiles (the interpreter), so these check the wiring: which configs a job
hands to the precompiler, the pool mechanics, and that failures never stop a tuning run. The GPU
test checks the point of it: a launch after precompiling compiles nothing new.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from moebench.presets import get_preset
from moebench.tuning import job as job_module
from moebench.tuning import precompile
from moebench.tuning.job import TuneJob, run_job
from moebench.tuning.search import Search, tile_groups
from moebench.tuning.space import configs

SPACE = configs(BLOCK_M=[16, 32, 64], BLOCK_N=[32, 64], num_warps=[4, 8])
DEFAULT = {"BLOCK_M": 32, "BLOCK_N": 64, "num_warps": 4}


def test_first_configs_are_what_the_search_times_before_refining():
    timed = []
    search = Search(SPACE, DEFAULT, lambda c: timed.append(c) or 1.0, max_configs=4)
    first = search.first_configs()
    assert first[0] == DEFAULT
    assert first == [DEFAULT] + [g[0] for g in tile_groups(search.candidates, DEFAULT) if g[0] != DEFAULT][:3]
    search.run(lambda c: None)
    assert timed == first  # the cap is reached before any refinement


def test_first_configs_without_a_cap_cover_every_tile_shape():
    first = Search(SPACE, DEFAULT, lambda c: 1.0).first_configs()
    assert {(c["BLOCK_M"], c["BLOCK_N"]) for c in first} == {(c["BLOCK_M"], c["BLOCK_N"]) for c in SPACE}


def test_auto_workers():
    assert precompile.auto_workers("cpu") == 0
    cores = os.cpu_count() or 1
    assert precompile.auto_workers("cuda", gpu_workers=1) == max(0, min(8, cores - 1))
    assert precompile.auto_workers("cuda", gpu_workers=10_000) == 0


def test_only_implementations_with_recorded_launches_are_precompiled():
    spec = get_preset("tiny", torch.float16)
    assert precompile.Precompiler("triton_grouped", spec, 4, workers=2).enabled
    assert precompile.Precompiler("block_sparse", spec, 4, workers=2).enabled
    assert not precompile.Precompiler("naive_loop", spec, 4, workers=2).enabled
    assert not precompile.Precompiler("triton_grouped", spec, 4, workers=0).enabled


def _launch_count(config: dict, tokens: int = 40) -> int:
    from moebench.compile_check import record_launches

    return len(record_launches(get_preset("tiny", torch.float16), tokens, config))


def test_warm_config_warms_every_launch():
    """Under the interpreter (the test default) warmup is a no-op that succeeds for each launch."""
    spec = get_preset("tiny", torch.float16)
    assert precompile.warm_config("triton_grouped", spec, 40, {}, False) == (_launch_count({}), None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure path: compiling without a GPU")
def test_warm_config_reports_failures_instead_of_raising():
    code = (
        "import torch; from moebench.presets import get_preset; from moebench.tuning.precompile import warm_config\n"
        "compiled, error = warm_config('triton_grouped', get_preset('tiny', torch.float16), 40, {}, False)\n"
        "assert compiled == 0 and error, (compiled, error); print(error)\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "_kernel" in proc.stdout  # the error names the kernel


def test_the_pool_warms_configs_in_spawned_processes():
    spec = get_preset("tiny", torch.float16)
    decode = {"path": {"path": "decode"}}
    pre = precompile.Precompiler("triton_grouped", spec, 40, workers=1)
    try:
        pre.warm([{}, decode], backward=False)
    finally:
        precompile.shutdown_pool()
    assert pre.errors == [] and pre.workers == 1
    assert pre.compiled == _launch_count({}) + _launch_count(decode)  # 7 grouped + 3 decode launches


def test_a_job_hands_each_kernels_first_configs_to_the_precompiler(monkeypatch, triton_device):
    calls = []
    monkeypatch.setattr(job_module, "precompile_available", lambda: True)
    monkeypatch.setattr(precompile.Precompiler, "warm", lambda self, cfgs, backward: calls.append((cfgs, backward)))
    spec = get_preset("tiny", torch.float32)
    job = TuneJob("triton_grouped", spec, 64, ("gate_up", "down"), triton_device, max_configs=3, compile_workers=2)
    result = run_job(job)
    assert result.error is None and [o.kernel for o in result.outcomes] == ["gate_up", "down"]
    assert len(calls) == 2 and all(backward is False for _, backward in calls)
    gate_up_configs = [cfg["gate_up"] for cfg in calls[0][0]]
    assert 1 <= len(gate_up_configs) <= 3
    assert all(
        set(cfg) == {"path", "gate_up", "down", "decode_gate_up", "decode_down", "quant_gemm"} for cfg in calls[0][0]
    )
    chosen_gate_up = result.outcomes[0].entry["config"] if result.outcomes[0].entry else None
    if chosen_gate_up is not None:  # the down search runs with gate_up's winner
        assert all(cfg["gate_up"] == chosen_gate_up for cfg in calls[1][0])


@pytest.mark.interpreter
def test_no_precompile_without_a_gpu(monkeypatch):
    workers = []
    monkeypatch.setattr(precompile.Precompiler, "warm", lambda self, cfgs, backward: workers.append(self.workers))
    spec = get_preset("tiny", torch.float32)
    job = TuneJob("triton_grouped", spec, 64, ("down",), "cpu", max_configs=2, compile_workers=4)
    assert run_job(job).precompiled == 0
    assert workers == [0]  # asked for 4, given none: nothing to compile without a GPU


@pytest.mark.gpu
def test_a_launch_after_precompiling_compiles_nothing(tmp_path):
    """Warm one config in a spawned worker with a fresh Triton cache, then run the layer in another
    process on the same cache: the run must add no cache entry (every kernel was found there)."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, torch\n"
        "from moebench.presets import get_preset\n"
        "from moebench.tuning.precompile import Precompiler, shutdown_pool\n"
        "from moebench.weights import random_inputs, random_weights\n"
        "import moebench.impls\n"
        "from moebench.registry import get\n"
        "spec = get_preset('qwen3-30b-a3b', torch.bfloat16)\n"
        "config = {'gate_up': {'BLOCK_M': 64, 'BLOCK_N': 64, 'BLOCK_K': 64, 'GROUP_M': 8, 'num_warps': 4,"
        " 'num_stages': 3}, 'path': {'path': 'grouped'}}\n"
        "if __name__ == '__main__' and sys.argv[1] == 'warm':  # spawned workers re-import this file\n"
        "    p = Precompiler('triton_grouped', spec, 256, workers=1)\n"
        "    p.warm([config], backward=False); shutdown_pool()\n"
        "    assert p.compiled > 0 and not p.errors, p.errors\n"
        "elif __name__ == '__main__':\n"
        "    w = random_weights(spec, device='cuda', seed=0)\n"
        "    x = random_inputs(spec, 256, device='cuda', seed=1)\n"
        "    get('triton_grouped')(x, w, config=config); torch.cuda.synchronize()\n"
    )
    cache = tmp_path / "triton-cache"
    env = {**os.environ, "TRITON_CACHE_DIR": str(cache), "TRITON_INTERPRET": "0"}
    root = Path(__file__).resolve().parents[1]
    for step in ("warm", "run"):
        before = sorted(p.name for p in cache.glob("*")) if cache.exists() else []
        proc = subprocess.run([sys.executable, str(script), step], env=env, cwd=root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    new = set(p.name for p in cache.glob("*")) - set(before)
    compiled = sorted(f.stem for name in new for f in (cache / name).glob("*.json") if "_kernel" in f.stem)
    assert not compiled, f"the run compiled kernels the warm-up did not: {compiled}"
