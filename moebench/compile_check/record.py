"""Compile every Triton kernel launch of an implementation for a GPU target, without a GPU.

The Triton interpreter is lenient (it runs kernels as NumPy code), so it cannot show what only the
compiler rejects or what the GPU pays for (register spills, shared memory, tensor-core use). This
runs the real launchers on `meta` tensors (no memory, real shapes and strides) with every kernel
replaced by a recorder, then compiles each recorded launch ahead of time with Triton's own
argument specialisation for the target (default sm_90, the H100), and reports per kernel the
shared memory, and from `ptxas -v` the registers and spill bytes, whether wgmma is used, and how
many of the global -> shared async copies are 16 bytes wide (what memory-bound tiles want).

    TRITON_INTERPRET=0 python -m moebench.compile_check --impl triton_grouped --preset qwen3-30b-a3b
    TRITON_INTERPRET=0 python -m moebench.compile_check --impl block_sparse --backward --preset mixtral-8x7b
    TRITON_INTERPRET=0 python -m moebench.compile_check --impl block_sparse --space --tokens 4096

--space compiles every candidate of every tuning space (moebench tune's search space) instead of
the defaults, so a config the H100 would reject, or one that spills, shows before a GPU is lent.
Identical compilations (same kernel, constexprs, options, specialisation) are done once.

Needs triton with its NVIDIA backend (ptxas ships in the wheel); no GPU and no CUDA driver.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from moebench.kernels.common.interpreter import interpreting
from moebench.presets import get_preset
from moebench.spec import MoESpec, parse_dtype

# implementation -> modules whose attributes name the kernels the launchers call
_LAUNCH_MODULES = {
    "triton_grouped": (
        "moebench.kernels.common.align",
        "moebench.kernels.triton_grouped.gemm",
        "moebench.kernels.triton_grouped.decode",
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


@dataclass
class CompiledLaunch:
    name: str
    constexprs: dict
    shared_bytes: int
    registers: int | None
    spill_bytes: int | None
    uses_wgmma: bool
    async_copies: tuple[int, int] = (0, 0)  # (16-byte, all) cp.async global -> shared copies in the PTX


class _Recorder:
    def __init__(self, kernel, log: list[Launch]):
        self.kernel, self.log = kernel, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append(Launch(self.kernel, tuple(grid), args, kwargs))

        return launch


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


def _empty_weights(spec: MoESpec, device, requires_grad: bool = False):
    from moebench.weights import MoEWeights

    e, h, i = spec.num_experts, spec.hidden, spec.intermediate
    opts = dict(device=device, dtype=spec.dtype, requires_grad=requires_grad)
    return MoEWeights(
        spec, torch.empty(e, h, **opts), torch.empty(e, spec.w1_rows, h, **opts), torch.empty(e, h, i, **opts)
    )


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
        weights = _empty_weights(spec, device, requires_grad=backward)
    x = torch.empty(num_tokens, spec.hidden, device=weights.device, dtype=spec.dtype)
    if x.device.type != "meta":
        x.normal_()  # routing reads x
    with _recording(impl) as log:
        if impl == "triton_grouped":
            from moebench.impls.triton_grouped.forward import moe_forward

            moe_forward(x, weights.router, weights.w1, weights.w2, spec, None, config)
        else:
            from moebench.impls.block_sparse.layer import block_sparse_moe

            with torch.enable_grad():
                out = block_sparse_moe(x.requires_grad_(backward), weights, config=config)
                if backward and num_tokens:
                    out.backward(torch.empty_like(out))
    return log


def _specialize(value) -> tuple[str, str | None]:
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    return native_specialize_impl(BaseBackend, value, False, True, True)[:2]


def _ptxas_stats(ptx: str, arch: int) -> tuple[int | None, int | None]:
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(arch).path  # the ptxas Triton itself uses for this arch
    except (ImportError, AttributeError, RuntimeError):
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        suffix = "a" if arch >= 90 else ""
        proc = subprocess.run(
            [ptxas, "-v", f"--gpu-name=sm_{arch}{suffix}", path, "-o", os.path.join(tmp, "k.cubin")],
            capture_output=True,
            text=True,
        )
    regs = re.search(r"Used (\d+) registers", proc.stderr)
    spills = re.findall(r"(\d+) bytes spill stores", proc.stderr)
    return (int(regs.group(1)) if regs else None), (max(map(int, spills)) if spills else None)


def _source(launch: Launch):
    """(ASTSource, constexprs, options, key): equal keys compile the same."""
    from triton.compiler import ASTSource

    kernel = launch.kernel
    options = {k: v for k, v in launch.kwargs.items() if k not in kernel.arg_names}
    bound = dict(zip(kernel.arg_names, launch.args))
    bound.update({k: v for k, v in launch.kwargs.items() if k in kernel.arg_names})
    signature, constexprs, attrs = {}, {}, {}
    for index, param in enumerate(kernel.params):
        value = bound[param.name]
        if param.is_constexpr:
            signature[param.name], constexprs[param.name] = "constexpr", value
            continue
        kind, attr = _specialize(value)
        signature[param.name] = kind
        if kind == "constexpr":
            constexprs[param.name] = value
        elif attr == "D":
            attrs[(index,)] = [["tt.divisibility", 16]]
    key = (
        kernel.__name__,
        tuple(signature.items()),
        tuple((k, repr(v)) for k, v in constexprs.items()),
        tuple(sorted(attrs)),
        tuple(sorted(options.items())),
    )
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    return source, constexprs, options, key


def compile_launch(launch: Launch, arch: int = 90, cache: dict | None = None) -> CompiledLaunch:
    """Compile one recorded launch for sm_<arch>; `cache` (a dict) reuses identical compilations."""
    import triton
    from triton.backends.compiler import GPUTarget

    source, constexprs, options, key = _source(launch)
    if cache is not None and key in cache:
        return cache[key]
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    ptx = compiled.asm["ptx"]
    regs, spills = _ptxas_stats(ptx, arch)
    shown = {k: v for k, v in constexprs.items() if isinstance(v, (bool, int)) and k.isupper()}
    copies = re.findall(r"cp\.async\.c[ga]\.shared\.global\S* \[[^\]]+\], \[[^\]]+\], (\w+)", ptx)
    wide = sum(int(size, 0) == 16 for size in copies)
    result = CompiledLaunch(
        launch.kernel.__name__, {**shown, **options}, compiled.metadata.shared, regs, spills, "wgmma" in ptx,
        (wide, len(copies)),
    )  # fmt: skip
    if cache is not None:
        cache[key] = result
    return result


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


def _report(tokens: int, compiled: CompiledLaunch, grid) -> str:
    return (
        f"T={tokens} {compiled.name}: smem={compiled.shared_bytes} regs={compiled.registers} "
        f"spill={compiled.spill_bytes} wgmma={compiled.uses_wgmma} "
        f"cp.async16={compiled.async_copies[0]}/{compiled.async_copies[1]} grid={grid} {compiled.constexprs}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=IMPLS, default="triton_grouped")
    parser.add_argument("--preset", default="qwen3-30b-a3b")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--tokens", default="1,16,1024")
    parser.add_argument("--path", choices=("auto", "grouped", "decode"), default="auto", help="triton_grouped only")
    parser.add_argument("--backward", action="store_true", help="also the backward pass (block_sparse)")
    parser.add_argument("--space", action="store_true", help="every tuning-space candidate, not the defaults")
    parser.add_argument("--arch", type=int, default=90)
    args = parser.parse_args(argv)
    if interpreting():
        print("compile_check: unset TRITON_INTERPRET (the interpreter replaces compiled kernels)", file=sys.stderr)
        return 2
    spec = get_preset(args.preset, parse_dtype(args.dtype))
    base = None if args.path == "auto" or args.impl != "triton_grouped" else {"path": {"path": args.path}}
    cache: dict = {}
    failures = spilling = 0
    for tokens in (int(t) for t in args.tokens.split(",")):
        if args.space:
            runs = [(f"{kernel}={cand}", config) for kernel, cand, config in space_configs(
                args.impl, spec, tokens, backward=args.backward)]  # fmt: skip
        else:
            runs = [("defaults", base)]
        for label, config in runs:
            before = len(cache)
            for launch in record_launches(spec, tokens, config, impl=args.impl, backward=args.backward):
                try:
                    compiled = compile_launch(launch, args.arch, cache)
                except Exception as exc:  # report every failing launch, keep going
                    failures += 1
                    print(f"T={tokens} {launch.kernel.__name__} [{label}]: FAILED {type(exc).__name__}: {exc}")
                    continue
                new = len(cache) > before
                before = len(cache)
                if args.space and not new:
                    continue  # compiled before: reported then
                spilling += new and bool(compiled.spill_bytes)
                print(_report(tokens, compiled, launch.grid))
    print(f"compile_check: {len(cache)} distinct compilations, {failures} failed, {spilling} spill")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
