"""Tunable kernels: each declares its search space and default as functions of (spec, T).

Shared helpers for writing spaces next to the kernels:
  configs(BLOCK_M=[...], num_warps=[...])   the product of parameter values as config dicts
  smem_bytes(BLOCK_M, BLOCK_N, BLOCK_K, num_stages, dtype)   shared memory a pipelined tile GEMM needs
  prune(configs, limit, dtype=...)          drop configs whose smem_bytes exceed `limit`
A space returning [] for some T means the kernel does not run at that T: the tuner skips it there.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from moebench.kernels.common.hopper import SMEM_LIMIT_BYTES
from moebench.spec import MoESpec

SpaceFn = Callable[[MoESpec, int], list[dict]]
DefaultFn = Callable[[MoESpec, int], dict]
ActiveFn = Callable[[dict], bool]


@dataclass(frozen=True)
class TunableKernel:
    """One kernel of one implementation whose launch parameters can be tuned.

    space(spec, T): candidate configs, already pruned (shared memory, tile vs problem size);
        [] where the kernel does not run at T (the tuner skips it there).
    default(spec, T): the config used when nothing is tuned; must be valid for any spec and T.
    active(configs): optional; whether the kernel runs when the implementation's kernels use
        `configs` ({kernel: config} for all of them), e.g. a decode kernel only when
        configs["path"]["path"] == "decode". The tuner skips inactive kernels (their timings would
        be noise). None: always runs.
    backward: the kernel runs in the backward pass; the tuner times forward + backward and checks
        the gradients against the fp64 reference's.
    Kernels are tuned in registration order, so register a kernel that selects others first.
    """

    impl: str
    kernel: str
    space: SpaceFn
    default: DefaultFn
    active: ActiveFn | None = None
    backward: bool = False


_TUNABLES: dict[tuple[str, str], TunableKernel] = {}


def register_tunable(
    impl: str,
    kernel: str,
    *,
    space: SpaceFn,
    default: DefaultFn,
    active: ActiveFn | None = None,
    backward: bool = False,
) -> TunableKernel:
    key = (impl, kernel)
    if key in _TUNABLES:
        raise ValueError(f"tunable kernel {impl}/{kernel} is already registered")
    _TUNABLES[key] = TunableKernel(impl, kernel, space, default, active, backward)
    return _TUNABLES[key]


def tunable(impl: str, kernel: str) -> TunableKernel:
    if (impl, kernel) not in _TUNABLES:
        raise KeyError(f"no tunable kernel {impl}/{kernel}; known: {sorted('/'.join(k) for k in _TUNABLES)}")
    return _TUNABLES[(impl, kernel)]


def tunables(impl: str | None = None) -> list[TunableKernel]:
    """Tunable kernels of `impl` (all when None). Import moebench.impls first so they register."""
    return [t for (name, _), t in _TUNABLES.items() if impl is None or name == impl]


def unregister_tunable(impl: str, kernel: str) -> None:
    """Remove a tunable kernel (tests use this to clean up the ones they register)."""
    _TUNABLES.pop((impl, kernel), None)


# -- helpers for declaring spaces -------------------------------------------------------------

# Shared memory one thread block may use (opt-in maximum): H100/H200 227 KiB (the sm_90 resource
# model, moebench.kernels.common.hopper), A100 163 KiB.
SMEM_LIMIT_H100 = SMEM_LIMIT_BYTES
SMEM_LIMIT_A100 = 166_912


def configs(**axes: Iterable) -> list[dict]:
    """configs(BLOCK_M=[16, 64], num_warps=[4, 8]) -> the 4 dicts of the product, in order."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(list(axes[n]) for n in names))]


def smem_bytes(BLOCK_M: int, BLOCK_N: int, BLOCK_K: int, num_stages: int, dtype: torch.dtype) -> int:
    """Shared memory of a software-pipelined tile GEMM: `num_stages` buffers of an A tile
    [BLOCK_M, BLOCK_K] and a B tile [BLOCK_K, BLOCK_N] in `dtype` (Triton's own estimate, and the
    one it fails on with 'out of resource: shared memory'). Epilogue scratch is not counted."""
    element = torch.finfo(dtype).bits // 8
    return max(int(num_stages), 1) * (BLOCK_M * BLOCK_K + BLOCK_K * BLOCK_N) * element


def prune(configs_: Iterable[dict], limit: int = SMEM_LIMIT_H100, dtype: torch.dtype = torch.bfloat16) -> list[dict]:
    """The configs whose smem_bytes fit in `limit` bytes. Configs without all of BLOCK_M, BLOCK_N,
    BLOCK_K are kept (their kernel decides); num_stages defaults to 1 when absent."""
    kept = []
    for config in configs_:
        if all(k in config for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")):
            need = smem_bytes(
                config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"], config.get("num_stages", 1), dtype
            )
            if need > limit:
                continue
        kept.append(config)
    return kept


# -- identity of a space: tuned files record it and are stale when it changes ------------------


def space_signature(kernel: TunableKernel, spec: MoESpec, buckets: Iterable[int]) -> tuple[str, frozenset[str]]:
    """(hash of the space over `buckets`, every parameter name the kernel knows) for this spec.

    The hash changes when a candidate is added, removed or renamed, so a config file tuned against
    another space is recognised as stale (a changed default alone does not make it stale).
    """
    seen: set[str] = set()
    names: set[str] = set()
    for num_tokens in buckets:
        names.update(kernel.default(spec, num_tokens))
        for config in kernel.space(spec, num_tokens):
            names.update(config)
            seen.add(json.dumps(config, sort_keys=True, default=str))
    digest = hashlib.sha256("\n".join(sorted(seen)).encode()).hexdigest()[:16]
    return digest, frozenset(names)
