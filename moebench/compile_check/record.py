"""Record the Triton kernel launches of an implementation without running them.

The real launchers run, on `meta` tensors by default (no memory, real shapes and strides), with
every kernel the launchers call replaced by a recorder; the result is the list of launches (kernel,
grid, arguments) a real run would make, in order. `space_configs` lists every tuning-space
candidate of an implementation as a full config, so each can be recorded and compiled.
"""

from __future__ import annotations

import importlib
import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from moebench.spec import MoESpec
from moebench.weights import empty_weights

# implementation -> modules whose attributes name the kernels the launchers call
_LAUNCH_MODULES = {
    "triton_grouped": (
        "moebench.kernels.common.align",
        "moebench.kernels.triton_grouped.gemm",
        "moebench.kernels.triton_grouped.decode",
        "moebench.kernels.triton_grouped.quant_gemm",
        "moebench.kernels.triton_grouped.quant_decode",
        "moebench.kernels.common.fp8",
        "moebench.kernels.common.combine",
    ),
    "block_sparse": (
        "moebench.kernels.common.align",
        "moebench.kernels.common.combine",
        "moebench.impls.block_sparse.topology",
        "moebench.impls.block_sparse.ops",
    ),
}
IMPLS = tuple(_LAUNCH_MODULES)


@dataclass
class Launch:
    kernel: object  # the JITFunction
    grid: tuple
    args: tuple
    kwargs: dict


class _Recorder:
    def __init__(self, kernel, log: list[Launch]):
        self.kernel, self.log = kernel, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append(Launch(self.kernel, tuple(grid), args, kwargs))

        return launch


def _constexpr_names(kernel) -> frozenset[str]:
    """Parameters annotated tl.constexpr (read from the source function, so it works for compiled
    and interpreted kernels alike)."""
    params = inspect.signature(kernel.fn).parameters.values()
    return frozenset(p.name for p in params if "constexpr" in str(p.annotation))


def _specialisation(value) -> object:
    """What Triton specialises a runtime argument on: a tensor's dtype (its pointer is aligned), an
    int's being 1 or a multiple of 16, a float's type, None."""
    if isinstance(value, torch.Tensor):
        return str(value.dtype)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return "1" if value == 1 else ("d16" if value % 16 == 0 else "i")
    return type(value).__name__


def variant_key(launch: Launch) -> tuple:
    """A key that differs when the launch would compile a different binary: the kernel, its
    constexpr values, how its runtime arguments are specialised and the launch options. Counting
    distinct keys counts compilations (moebench.session's compile allowance); needs no compiler."""
    kernel = launch.kernel
    bound = dict(zip(kernel.arg_names, launch.args))
    bound.update({k: v for k, v in launch.kwargs.items() if k in kernel.arg_names})
    constexprs = _constexpr_names(kernel)
    args = tuple((name, repr(v) if name in constexprs else _specialisation(v)) for name, v in bound.items())
    options = tuple(sorted((k, repr(v)) for k, v in launch.kwargs.items() if k not in kernel.arg_names))
    return (kernel.fn.__name__, args, options)


def _is_jit_kernel(name: str, value) -> bool:
    return name.endswith("_kernel") and hasattr(value, "fn") and hasattr(value, "arg_names")


@contextmanager
def _recording(impl: str):
    """Within the block, every kernel the launchers of `impl` call records instead of running."""
    log: list[Launch] = []
    patched = []
    for module_name in _LAUNCH_MODULES[impl]:
        module = importlib.import_module(module_name)
        for attr, value in list(vars(module).items()):
            if _is_jit_kernel(attr, value):
                patched.append((module, attr, value))
                setattr(module, attr, _Recorder(value, log))
    try:
        yield log
    finally:
        for module, attr, value in patched:
            setattr(module, attr, value)


def record_launches(
    spec: MoESpec,
    num_tokens: int,
    config: dict | None = None,
    *,
    device: str | torch.device = "meta",
    weights=None,
    impl: str = "triton_grouped",
    backward: bool = False,
) -> list[Launch]:
    """Run `impl`'s launchers with recorders in place of the kernels; returns the launches in order.

    device="meta" (default) needs no memory, so real presets fit; pass CPU `weights` (MoEWeights)
    to record what a CPU run would launch. Nothing is computed either way. backward=True (an
    implementation with a backward) also runs the backward pass and records its launches.
    """
    if impl not in _LAUNCH_MODULES:
        raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")
    if weights is None:
        weights = empty_weights(spec, device, requires_grad=backward)
    x = torch.empty(num_tokens, spec.hidden, device=weights.device, dtype=spec.dtype)
    if x.device.type != "meta":
        x.normal_()  # routing reads x
    with _recording(impl) as log:
        if impl == "triton_grouped" and spec.quant is not None:  # quantised experts: their own launcher
            from moebench.impls.triton_grouped.quant import quant_forward

            quant_forward(x, weights, None, config)
        elif impl == "triton_grouped":
            from moebench.impls.triton_grouped.forward import moe_forward

            moe_forward(x, weights, None, config)
        else:
            from moebench.impls.block_sparse.layer import block_sparse_moe

            with torch.enable_grad():
                out = block_sparse_moe(x.requires_grad_(backward), weights, config=config)
                if backward and num_tokens:
                    out.backward(torch.empty_like(out))
    return log


def space_configs(impl: str, spec: MoESpec, num_tokens: int, *, backward: bool):
    """(kernel, candidate, full config) for every candidate of every tuning space of `impl` at T,
    the other kernels at their defaults; a candidate of a kernel that another selects (the decode
    kernels, say) comes with a selector config that makes it run."""
    import moebench.impls  # noqa: F401  (registers the tunables)
    from moebench.tuning import tunables

    kernels = [t for t in tunables(impl) if backward or not t.backward]
    defaults = {t.kernel: t.default(spec, num_tokens) for t in kernels}
    for t in kernels:
        for candidate in t.space(spec, num_tokens):
            config = {**defaults, t.kernel: candidate}
            if t.active is not None and not t.active(config):
                config = _activate(t, config, kernels, spec, num_tokens)
                if config is None:
                    continue
            yield t.kernel, candidate, config


def _activate(target, config: dict, kernels, spec: MoESpec, num_tokens: int) -> dict | None:
    for selector in kernels:
        if selector is target or selector.active is not None:
            continue
        for choice in selector.space(spec, num_tokens):
            trial = {**config, selector.kernel: choice}
            if target.active(trial):
                return trial
    return None
