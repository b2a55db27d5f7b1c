"""Autotuning: tunable kernels, the config cache under results/configs/, and `moebench tune`.

Implementations call `resolve_config` for each of their kernels. Priority:
  1. an explicit config passed by the caller (`config={kernel: {...}}`),
  2. the environment variable MOEBENCH_PIN_CONFIG (a JSON object {kernel: {...}} or
     {"impl/kernel": {...}}) that pins one config for debugging,
  3. the tuned config cache (`lookup_config`),
  4. the kernel's default heuristic.
"""

from __future__ import annotations

import json
import os

import torch

from moebench.errors import MoEInputError
from moebench.spec import MoESpec
from moebench.tuning.space import TunableKernel, register_tunable, tunable, tunables

PIN_ENV = "MOEBENCH_PIN_CONFIG"

__all__ = [
    "PIN_ENV",
    "TunableKernel",
    "check_explicit_config",
    "check_pinned_env",
    "lookup_config",
    "register_tunable",
    "resolve_config",
    "tunable",
    "tunables",
]


def lookup_config(impl: str, kernel: str, spec: MoESpec, num_tokens: int, device: torch.device) -> dict | None:
    """The cached tuned config for (impl, kernel, spec, T, device), or None (use the default)."""
    try:
        from moebench.tuning.cache import lookup
    except ImportError:
        return None
    return lookup(impl, kernel, spec, num_tokens, device)


def _pins() -> dict | None:
    """MOEBENCH_PIN_CONFIG parsed (None when unset); bad JSON or a non-object raises."""
    text = os.environ.get(PIN_ENV)
    if not text:
        return None
    try:
        pins = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MoEInputError(
            f"{PIN_ENV}: expected a JSON object {{kernel: {{param: value}}}}, got {text!r} ({exc})"
        ) from None
    if not isinstance(pins, dict) or not all(isinstance(v, dict) for v in pins.values()):
        raise MoEInputError(f"{PIN_ENV}: expected a JSON object {{kernel: {{param: value}}}}, got {text!r}")
    return pins


def check_pinned_env() -> None:
    """Validate MOEBENCH_PIN_CONFIG once, before a run: valid JSON, and every key a registered
    tunable kernel (`kernel` or `impl/kernel`), so a misspelt name is an error, never ignored."""
    pins = _pins()
    if not pins:
        return
    from moebench import registry

    registry.all_impls()  # registers every implementation's tunable kernels
    known = {t.kernel for t in tunables()} | {f"{t.impl}/{t.kernel}" for t in tunables()}
    unknown = sorted(set(pins) - known)
    if unknown:
        raise MoEInputError(f"{PIN_ENV}: unknown kernel(s) {unknown}; expected some of {sorted(known)}")


def pinned_config(impl: str, kernel: str) -> dict | None:
    pins = _pins()
    if pins is None:
        return None
    return pins.get(f"{impl}/{kernel}", pins.get(kernel))


def check_explicit_config(impl: str, config: dict | None) -> None:
    """A caller's config must be {kernel: {param: value}} naming only `impl`'s registered tunable
    kernels: a misspelt kernel is an error, never silently ignored."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise MoEInputError(f"config: expected a dict {{kernel: {{param: value}}}}, got {type(config).__name__}")
    kernels = [t.kernel for t in tunables(impl)]
    unknown = sorted(set(config) - set(kernels))
    if unknown:
        raise MoEInputError(f"config: unknown kernel(s) {unknown} for {impl}; expected some of {kernels}")


def resolve_config(
    impl: str,
    kernel: str,
    spec: MoESpec,
    num_tokens: int,
    device: torch.device,
    explicit: dict | None = None,
) -> dict:
    """The config a kernel launch uses (see module docstring for the priority)."""
    if explicit and kernel in explicit:
        return dict(explicit[kernel])
    pinned = pinned_config(impl, kernel)
    if pinned is not None:
        return dict(pinned)
    cached = lookup_config(impl, kernel, spec, num_tokens, device)
    if cached is not None:
        return dict(cached)
    return dict(tunable(impl, kernel).default(spec, num_tokens))
