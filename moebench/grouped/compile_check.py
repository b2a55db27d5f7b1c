"""Compile every `triton_grouped` kernel launch for a GPU target without a GPU (a developer check).

The Triton interpreter is lenient (it runs kernels as NumPy code), so it cannot show what only the
compiler rejects or what the GPU pays for (register spills, shared memory, tensor-core use). This
runs the real launchers on `meta` tensors (no memory, real shapes and strides) with every kernel
replaced by a recorder, then compiles each recorded launch ahead of time with Triton's own
argument specialisation for the target (default sm_90, the H100), and reports per kernel the
shared memory, and from `ptxas -v` the registers and spill bytes, and whether wgmma is used.

    TRITON_INTERPRET=0 python -m moebench.grouped.compile_check --preset qwen3-30b-a3b --tokens 1,16,4096

Needs triton with its NVIDIA backend (ptxas ships in the wheel); no GPU and no CUDA driver.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import torch

from moebench.presets import get_preset
from moebench.spec import MoESpec, parse_dtype

_KERNEL_MODULES = ("moe_align", "grouped_gemm", "decode", "combine")


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


class _Recorder:
    def __init__(self, kernel, log: list[Launch]):
        self.kernel, self.log = kernel, log

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.log.append(Launch(self.kernel, tuple(grid), args, kwargs))

        return launch


def record_launches(
    spec: MoESpec,
    num_tokens: int,
    config: dict | None = None,
    *,
    device: str | torch.device = "meta",
    weights=None,
) -> list[Launch]:
    """Run the launchers with recorders in place of the kernels; returns the launches in order.

    device="meta" (default) needs no memory, so real presets fit; pass CPU `weights` (MoEWeights)
    to record what a CPU run would launch. Nothing is computed either way.
    """
    import importlib

    from moebench.grouped.forward import moe_forward
    from moebench.weights import MoEWeights

    log: list[Launch] = []
    patched = []
    for module_name in _KERNEL_MODULES:
        module = importlib.import_module(f"moebench.kernels.{module_name}")
        for attr, value in vars(module).items():
            if attr.endswith("_kernel") and hasattr(value, "fn"):
                patched.append((module, attr, value))
                setattr(module, attr, _Recorder(value, log))
    try:
        if weights is None:
            e, h, i = spec.num_experts, spec.hidden, spec.intermediate
            opts = dict(device=device, dtype=spec.dtype)
            weights = MoEWeights(
                spec, torch.empty(e, h, **opts), torch.empty(e, spec.w1_rows, h, **opts), torch.empty(e, h, i, **opts)
            )
        x = torch.empty(num_tokens, spec.hidden, device=weights.device, dtype=spec.dtype)
        if x.device.type != "meta":
            x.normal_()  # routing reads x
        moe_forward(x, weights.router, weights.w1, weights.w2, spec, None, config)
    finally:
        for module, attr, value in patched:
            setattr(module, attr, value)
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


def compile_launch(launch: Launch, arch: int = 90) -> CompiledLaunch:
    import triton
    from triton.backends.compiler import GPUTarget
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
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    ptx = compiled.asm["ptx"]
    regs, spills = _ptxas_stats(ptx, arch)
    shown = {k: v for k, v in constexprs.items() if isinstance(v, (bool, int)) and k.isupper()}
    return CompiledLaunch(kernel.__name__, {**shown, **options}, compiled.metadata.shared, regs, spills, "wgmma" in ptx)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="qwen3-30b-a3b")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--tokens", default="1,16,1024")
    parser.add_argument("--path", choices=("auto", "grouped", "decode"), default="auto")
    parser.add_argument("--arch", type=int, default=90)
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("compile_check: unset TRITON_INTERPRET (the interpreter replaces compiled kernels)", file=sys.stderr)
        return 2
    spec = get_preset(args.preset, parse_dtype(args.dtype))
    config = None if args.path == "auto" else {"path": {"path": args.path}}
    failures = 0
    for tokens in (int(t) for t in args.tokens.split(",")):
        for launch in record_launches(spec, tokens, config):
            try:
                c = compile_launch(launch, args.arch)
            except Exception as exc:  # report every failing launch, keep going
                failures += 1
                print(f"T={tokens} {launch.kernel.__name__}: FAILED {type(exc).__name__}: {exc}")
                continue
            print(
                f"T={tokens} {c.name}: smem={c.shared_bytes} regs={c.registers} spill={c.spill_bytes} "
                f"wgmma={c.uses_wgmma} grid={launch.grid} {c.constexprs}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
