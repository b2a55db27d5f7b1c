"""A test-only tunable implementation for the tuner's tests, its fixtures, and tests of its plants.

`fake_tunable` computes the MoE layer correctly (densely, written in chunks of BLOCK_T tokens)
with two tunable kernels:
  ffn:    BLOCK_T (tile-like) x num_warps (schedule-like); default {BLOCK_T: 16, num_warps: 4}.
          Planted: BLOCK_T=32 drops the last token chunk, BLOCK_T=64 scales the output by 1.05;
          both are the fastest of all. BLOCK_T=3 raises. A config with BLOCK_PLANTED=kind (not in the
          default space; tests/test_tuning_rows.py adds them) plants a few wrong rows
          (tests/planted_rows.py) and is the fastest too.
  decode: SPLIT in {1, 2, 4}, only for T <= 16 (an empty space above: the kernel does not run).
Its speed is virtual: every call stores a cost in VIRTUAL_MS that the `fake_tunable` fixture's
time_fn returns, so tests are deterministic and need no sleeps. CALLS logs (T, ffn config).

Nothing registers at import (pytest imports this file at collection): `install()` does, for the
tests (`installed`) and, via worker_setup="test_tuning_fake_impl:install", in worker processes.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from moebench import registry
from moebench.activations import apply_activation
from moebench.parity import compare
from moebench.reference import reference_moe
from moebench.routing import route
from moebench.spec import MoESpec
from moebench.timing import Timing
from moebench.tuning import cache, files, resolve_config, trial
from moebench.tuning.space import configs, register_tunable, tunables, unregister_tunable
from moebench.weights import random_inputs, random_weights

IMPL = "fake_tunable"
SETUP = "test_tuning_fake_impl:install"
DROPS_LAST_CHUNK = {"BLOCK_T": 32, "num_warps": 4}
SCALES_OUTPUT = {"BLOCK_T": 64, "num_warps": 4}
RAISES = {"BLOCK_T": 3, "num_warps": 4}
FFN_DEFAULT = {"BLOCK_T": 16, "num_warps": 4}
PLANTED_KEY = "BLOCK_PLANTED"  # a tile parameter, so the search times each plant as its own tile shape
DECODE_MAX_TOKENS = 16
TINY = MoESpec(4, 2, 32, 48, dtype=torch.float32)

CALLS: list[tuple[int, dict]] = []
VIRTUAL_MS = [0.0]


def ffn_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    return configs(BLOCK_T=[1, 2, 4, 8, 16], num_warps=[1, 2, 4, 8]) + [DROPS_LAST_CHUNK, SCALES_OUTPUT, RAISES]


def decode_space(spec: MoESpec, num_tokens: int) -> list[dict]:
    return configs(SPLIT=[1, 2, 4]) if num_tokens <= DECODE_MAX_TOKENS else []


def virtual_cost_ms(ffn: dict, decode: dict | None) -> float:
    if ffn in (DROPS_LAST_CHUNK, SCALES_OUTPUT) or PLANTED_KEY in ffn:
        cost = 0.1  # planted to be the fastest
    else:
        cost = 1.0 + 0.5 * abs(math.log2(ffn["BLOCK_T"]) - 2) + 0.25 * abs(math.log2(ffn["num_warps"]) - 1)
    if decode is not None:
        cost += 0.2 * abs(decode["SPLIT"] - 2)
    return cost


def dense_moe(x: torch.Tensor, weights) -> torch.Tensor:
    """The layer computed densely (every expert on every token, then the top-k weighted sum):
    a handful of torch ops whatever T and E, so the tests stay fast on a busy 2-core machine."""
    spec = weights.spec
    topk_weights, topk_ids = route(x, weights)  # [T, k] fp32, [T, k] int64
    h = apply_activation(spec, torch.einsum("th,eih->eti", x.float(), weights.w1.float()))  # [E, T, I]
    y = torch.einsum("eti,ehi->teh", h, weights.w2.float())  # [T, E, H]
    picked = torch.gather(y, 1, topk_ids[:, :, None].expand(-1, -1, spec.hidden))  # [T, k, H]
    return (picked * topk_weights[:, :, None]).sum(1)  # [T, H] fp32


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by `scale` (1.0 is right)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def fake_tunable(x: torch.Tensor, weights, *, out=None, config=None) -> torch.Tensor:
    spec, num_tokens = weights.spec, x.shape[0]
    bwd_cost = 0.0
    if any(t.kernel == "bwd" for t in tunables(IMPL)):
        bwd = resolve_config(IMPL, "bwd", spec, num_tokens, x.device, explicit=config)
        x = _ScaleGrad.apply(x, bwd["GRAD_SCALE"])
        bwd_cost = 0.1 if bwd["GRAD_SCALE"] != 1.0 else 0.3 * bwd["SPLIT"]
    ffn = resolve_config(IMPL, "ffn", spec, num_tokens, x.device, explicit=config)
    decode = None
    if num_tokens <= DECODE_MAX_TOKENS:
        decode = resolve_config(IMPL, "decode", spec, num_tokens, x.device, explicit=config)
    CALLS.append((num_tokens, dict(ffn)))
    if ffn == RAISES:
        raise RuntimeError("BLOCK_T=3 is not supported (planted failure)")
    VIRTUAL_MS[0] = virtual_cost_ms(ffn, decode) + bwd_cost
    full = dense_moe(x, weights)
    chunk = ffn["BLOCK_T"]
    acc = torch.zeros_like(full)
    starts = list(range(0, num_tokens, chunk))
    if ffn == DROPS_LAST_CHUNK:
        starts = starts[:-1]
    for start in starts:  # the token chunks a kernel with BLOCK_T would write
        acc[start : start + chunk] = full[start : start + chunk]
    if ffn == SCALES_OUTPUT:
        acc *= 1.05
    if PLANTED_KEY in ffn:
        import planted_rows  # here, not at the top: Ray's tuning workers import this module without tests/ on the path

        acc = planted_rows.corrupt(ffn[PLANTED_KEY], acc, x, weights)
    if out is None:
        return acc.to(x.dtype)
    return out.copy_(acc)


def install() -> None:
    """Register the implementation and its tunables (idempotent)."""
    if IMPL not in registry._REGISTRY:
        registry.register(IMPL, kind="loop", description="test-only tunable implementation", graph_safe=False)(
            fake_tunable
        )
    for kernel, space, default in (
        ("ffn", ffn_space, lambda spec, t: dict(FFN_DEFAULT)),
        ("decode", decode_space, lambda spec, t: {"SPLIT": 1}),
    ):
        with contextlib.suppress(ValueError):  # already registered
            register_tunable(IMPL, kernel, space=space, default=default)


def install_backward() -> None:
    """Add a backward-pass kernel "bwd": SPLIT in {1, 2} (SPLIT=1 faster); GRAD_SCALE=0.5 is a
    planted wrong gradient of x (right output), the fastest of all."""
    register_tunable(
        IMPL,
        "bwd",
        space=lambda spec, t: configs(SPLIT=[1, 2], GRAD_SCALE=[1.0]) + [{"SPLIT": 1, "GRAD_SCALE": 0.5}],
        default=lambda spec, t: {"SPLIT": 2, "GRAD_SCALE": 1.0},
        backward=True,
    )


def uninstall() -> None:
    registry.unregister(IMPL)
    for kernel in ("ffn", "decode", "bwd"):
        unregister_tunable(IMPL, kernel)


def virtual_time_fn(fn, device, *, use_graph=True, **kwargs) -> Timing:
    fn()
    ms = VIRTUAL_MS[0]
    return Timing(ms, ms, ms, 1, "virtual")


# -- the environment every tuning test runs in ------------------------------------------------


@contextlib.contextmanager
def installed(tmp_path, monkeypatch):
    """The fake implementation installed and timed virtually, its call log cleared; config
    folders tmp/user ($MOEBENCH_CONFIG_DIR) and tmp/shipped (the shipped folder); fresh lookups.
    Yields {"user": Path, "shipped": Path}. Test files wrap it in a fixture named `dirs`."""
    user, shipped = tmp_path / "user", tmp_path / "shipped"
    user.mkdir()
    shipped.mkdir()
    monkeypatch.setenv(cache.CONFIG_DIR_ENV, str(user))
    monkeypatch.setattr(files, "shipped_config_dir", lambda: shipped)
    monkeypatch.delenv("MOEBENCH_PIN_CONFIG", raising=False)
    monkeypatch.setattr(trial, "time_fn", virtual_time_fn)
    cache.clear_memo()
    install()
    CALLS.clear()
    try:
        yield {"user": user, "shipped": shipped}
    finally:
        uninstall()
        CALLS.clear()
        cache.clear_memo()


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    with installed(tmp_path, monkeypatch) as folders:
        yield folders


# -- the plants work (otherwise the tuner tests prove nothing) --------------------------------


def _rel_error(config: dict, num_tokens: int):
    weights = random_weights(TINY, seed=3)
    x = random_inputs(TINY, num_tokens, seed=4)
    out = fake_tunable(x, weights, config={"ffn": config, "decode": {"SPLIT": 1}})
    return compare(out, reference_moe(x, weights), TINY.dtype)


@pytest.mark.usefixtures("dirs")
@pytest.mark.parametrize("num_tokens", [1, 8, 37])
def test_fake_is_correct_for_every_honest_config(num_tokens):
    for config in ffn_space(TINY, num_tokens):
        if config in (DROPS_LAST_CHUNK, SCALES_OUTPUT, RAISES):
            continue
        assert _rel_error(config, num_tokens).ok, config


@pytest.mark.usefixtures("dirs")
@pytest.mark.parametrize("planted", [DROPS_LAST_CHUNK, SCALES_OUTPUT])
@pytest.mark.parametrize("num_tokens", [1, 8, 37])
def test_planted_configs_fail_parity_and_are_fastest(planted, num_tokens):
    assert not _rel_error(planted, num_tokens).ok
    honest = [c for c in ffn_space(TINY, num_tokens) if c not in (DROPS_LAST_CHUNK, SCALES_OUTPUT, RAISES)]
    assert virtual_cost_ms(planted, None) < min(virtual_cost_ms(c, None) for c in honest)


@pytest.mark.usefixtures("dirs")
def test_raising_config_raises():
    with pytest.raises(RuntimeError, match="planted failure"):
        _rel_error(RAISES, 4)
