"""Tunable kernels: each declares its search space and default as functions of (spec, T)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from moebench.spec import MoESpec

SpaceFn = Callable[[MoESpec, int], list[dict]]
DefaultFn = Callable[[MoESpec, int], dict]


@dataclass(frozen=True)
class TunableKernel:
    """One kernel of one implementation whose launch parameters can be tuned.

    space(spec, T): candidate configs, already pruned (shared memory, tile vs problem size).
    default(spec, T): the config used when nothing is tuned; must be valid for any spec and T.
    """

    impl: str
    kernel: str
    space: SpaceFn
    default: DefaultFn


_TUNABLES: dict[tuple[str, str], TunableKernel] = {}


def register_tunable(impl: str, kernel: str, *, space: SpaceFn, default: DefaultFn) -> TunableKernel:
    key = (impl, kernel)
    if key in _TUNABLES:
        raise ValueError(f"tunable kernel {impl}/{kernel} is already registered")
    _TUNABLES[key] = TunableKernel(impl, kernel, space, default)
    return _TUNABLES[key]


def tunable(impl: str, kernel: str) -> TunableKernel:
    if (impl, kernel) not in _TUNABLES:
        raise KeyError(f"no tunable kernel {impl}/{kernel}; known: {sorted('/'.join(k) for k in _TUNABLES)}")
    return _TUNABLES[(impl, kernel)]


def tunables(impl: str | None = None) -> list[TunableKernel]:
    """Tunable kernels of `impl` (all when None). Import moebench.impls first so they register."""
    return [t for (name, _), t in _TUNABLES.items() if impl is None or name == impl]
