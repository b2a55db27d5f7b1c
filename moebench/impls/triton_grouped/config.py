"""Resolve and check the launch configs of `triton_grouped` (one place for every error message).

Each kernel's config comes from moebench.tuning.resolve_config (explicit > MOEBENCH_PIN_CONFIG >
tuned cache > default) and is laid over the kernel's default, so a partial explicit config such
as {"gate_up": {"BLOCK_M": 32}} changes just that key. Values are checked here, before any
launch, and a bad one raises MoEInputError naming config[kernel][key]. Importing this module
registers the tunables (moebench.tuning) of all six kernels: five for unquantised experts, and
quant_gemm for quantised ones (each has an empty space on the other kind of spec).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moebench.errors import MoEInputError
from moebench.kernels.triton_grouped import space
from moebench.kernels.triton_grouped.quant_space import QUANT_KERNEL, QUANT_KEYS, quant_default, quant_space
from moebench.layer_options import FEATURES as LAYER_FEATURES
from moebench.quant.formats import get_format
from moebench.spec import MoESpec
from moebench.tuning import check_explicit_config, register_tunable, resolve_config

IMPL = "triton_grouped"
# the spec options (moebench.spec.FEATURES) the kernels honour: all of them (routing options in
# moebench.routing.route, the rest in the kernels' epilogues and moebench.impls.common.pairs)
FEATURES: frozenset[str] = frozenset(LAYER_FEATURES)
FEATURES_NOTE = ""


def _runs_on(path: str):
    """`active` of a tunable: the kernel runs only when the `path` config selects its path."""

    def active(configs: dict) -> bool:
        return (configs.get("path") or {}).get("path") == path

    return active


_ACTIVE = {
    "gate_up": _runs_on("grouped"),
    "down": _runs_on("grouped"),
    "decode_gate_up": _runs_on("decode"),
    "decode_down": _runs_on("decode"),
}


def _unquantised(space_fn):
    """The kernels of unquantised experts do not run on quantised ones: an empty space there."""

    def unquantised_space(spec: MoESpec, num_tokens: int) -> list[dict]:
        return [] if spec.quant is not None else space_fn(spec, num_tokens)

    return unquantised_space


# registered once, when this module is first imported ("path" first: it selects which of the others run;
# quant_gemm last: on quantised experts it is the only one that runs)
for _kernel, (_space, _default) in space.TUNABLES.items():
    register_tunable(IMPL, _kernel, space=_unquantised(_space), default=_default, active=_ACTIVE.get(_kernel))
register_tunable(IMPL, QUANT_KERNEL, space=quant_space, default=quant_default)

_TILE_LIMITS = {"BLOCK_M": 256, "BLOCK_N": 256, "BLOCK_K": 256, "BLOCK_P": 256}
_WARPS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class LaunchConfigs:
    """The configs one forward pass uses: `first`/`second` are gate_up/down on the grouped path
    (second carries BLOCK_M, which divides gate_up's) or decode_gate_up/decode_down on decode."""

    path: str
    first: dict
    second: dict


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(kernel: str, key: str, value, *, low: int = 1, high: int | None = None, pow2: bool = False) -> None:
    where = f"config[{kernel!r}][{key!r}]"
    if not _is_int(value):
        raise MoEInputError(f"{where}: expected an int, got {value!r}")
    if pow2 and (value < low or (high is not None and value > high) or value & (value - 1)):
        raise MoEInputError(f"{where}: expected a power of two in [{low}, {high}], got {value}")
    if value < low or (high is not None and value > high):
        raise MoEInputError(f"{where}: expected an int in [{low}, {high if high is not None else 'inf'}], got {value}")


def check_tile_config(kernel: str, cfg: dict, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """Raise MoEInputError for a missing/unknown key or a bad value; returns cfg."""
    if not isinstance(cfg, dict):
        raise MoEInputError(f"config[{kernel!r}]: expected a dict of launch parameters, got {cfg!r}")
    unknown = sorted(set(cfg) - set(required) - set(optional))
    if unknown:
        raise MoEInputError(f"config[{kernel!r}]: unknown key(s) {unknown}; expected {list(required + optional)}")
    missing = [key for key in required if key not in cfg]
    if missing:
        raise MoEInputError(f"config[{kernel!r}]: missing key(s) {missing}")
    for key, value in cfg.items():
        if key in _TILE_LIMITS:
            _check_int(kernel, key, value, low=16, high=_TILE_LIMITS[key], pow2=True)
        elif key == "GROUP_M":
            _check_int(kernel, key, value, low=1, high=64)
        elif key == "num_warps":
            if value not in _WARPS or not _is_int(value):
                raise MoEInputError(f"config[{kernel!r}]['num_warps']: expected one of {list(_WARPS)}, got {value!r}")
        elif key == "num_stages":
            _check_int(kernel, key, value, low=1, high=8)
    return cfg


def _over_default(kernel: str, spec: MoESpec, num_tokens: int, chosen) -> dict:
    if not isinstance(chosen, dict):
        raise MoEInputError(f"config[{kernel!r}]: expected a dict of launch parameters, got {chosen!r}")
    default = quant_default if kernel == QUANT_KERNEL else space.TUNABLES[kernel][1]
    return {**default(spec, num_tokens), **chosen}


def _resolved(kernel: str, spec: MoESpec, num_tokens: int, device: torch.device, explicit: dict | None) -> dict:
    if explicit and kernel in explicit and not isinstance(explicit[kernel], dict):
        _over_default(kernel, spec, num_tokens, explicit[kernel])  # raises the clear error
    chosen = resolve_config(IMPL, kernel, spec, num_tokens, device, explicit=explicit)
    return _over_default(kernel, spec, num_tokens, chosen)


def _resolved_path(spec: MoESpec, num_tokens: int, device: torch.device, explicit: dict | None) -> dict:
    path = _resolved("path", spec, num_tokens, device, explicit)
    if set(path) != {"path"} or path["path"] not in space.PATHS:
        raise MoEInputError(f"config['path']: expected {{'path': one of {list(space.PATHS)}}}, got {path!r}")
    return path


def resolve_launch_configs(
    spec: MoESpec, num_tokens: int, device: torch.device, explicit: dict | None = None
) -> LaunchConfigs:
    """Resolve the configs of the kernels the chosen path runs; explicit configs of the other
    path's kernels are still checked, so a typo never goes unnoticed."""
    check_explicit_config(IMPL, explicit)
    path = _resolved_path(spec, num_tokens, device, explicit)
    grouped = path["path"] == "grouped"
    for kernel in ("decode_gate_up", "decode_down") if grouped else ("gate_up", "down"):
        if explicit and kernel in explicit:
            _check_kernel(kernel, _over_default(kernel, spec, num_tokens, explicit[kernel]))
    if grouped:
        gate_up = _check_kernel("gate_up", _resolved("gate_up", spec, num_tokens, device, explicit))
        down = _check_kernel("down", _resolved("down", spec, num_tokens, device, explicit))
        down.setdefault("BLOCK_M", gate_up["BLOCK_M"])
        if gate_up["BLOCK_M"] % down["BLOCK_M"]:
            raise MoEInputError(
                f"config['down']['BLOCK_M']: must divide config['gate_up']['BLOCK_M']={gate_up['BLOCK_M']} "
                f"(pairs are padded to gate_up's BLOCK_M), got {down['BLOCK_M']}"
            )
        return LaunchConfigs("grouped", gate_up, down)
    first = _check_kernel("decode_gate_up", _resolved("decode_gate_up", spec, num_tokens, device, explicit))
    second = _check_kernel("decode_down", _resolved("decode_down", spec, num_tokens, device, explicit))
    return LaunchConfigs("decode", first, second)


def _check_kernel(kernel: str, cfg: dict) -> dict:
    if kernel == "gate_up":
        return check_tile_config(kernel, cfg, space.GATE_UP_KEYS)
    if kernel == "down":
        return check_tile_config(kernel, cfg, space.DOWN_KEYS, space.DOWN_OPTIONAL_KEYS)
    return check_tile_config(kernel, cfg, space.DECODE_KEYS)


def resolve_quant_config(
    spec: MoESpec, num_tokens: int, device: torch.device, explicit: dict | None = None
) -> tuple[str, dict]:
    """(path, quant_gemm config) of a forward on quantised experts (each explicit > pinned > tuned > default),
    checked; explicit configs of the other kernels are checked by name and not used (they do not run here)."""
    check_explicit_config(IMPL, explicit)
    path = _resolved_path(spec, num_tokens, device, explicit)
    chosen = _resolved(QUANT_KERNEL, spec, num_tokens, device, explicit)
    cfg = check_tile_config(QUANT_KERNEL, chosen, QUANT_KEYS)
    fmt = get_format(spec.quant)
    if fmt.kind == "fp8" and fmt.group_size % cfg["BLOCK_K"]:  # one scale per K tile (the kernel's need)
        raise MoEInputError(
            f"config[{QUANT_KERNEL!r}]['BLOCK_K']: {spec.quant} needs a divisor of {fmt.group_size}, "
            f"got {cfg['BLOCK_K']}"
        )
    return path["path"], cfg
