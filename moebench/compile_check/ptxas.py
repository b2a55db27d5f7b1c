"""Compile one recorded launch ahead of time for a GPU target, without a GPU, and read what the
compiler says: shared memory (Triton's metadata), registers and spill bytes (`ptxas -v`), whether
wgmma is used and how many global -> shared async copies are 16 bytes wide (the PTX).

Uses Triton's own argument specialisation for the target, so the compilation is the one a launch
on that GPU would make. Needs triton with its NVIDIA backend (ptxas ships in the wheel).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from moebench.compile_check.record import Launch


@dataclass
class CompiledLaunch:
    name: str
    constexprs: dict
    shared_bytes: int
    registers: int | None
    spill_bytes: int | None
    uses_wgmma: bool
    async_copies: tuple[int, int] = (0, 0)  # (16-byte, all) cp.async global -> shared copies in the PTX


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
