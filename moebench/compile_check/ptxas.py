"""Compile one recorded launch ahead of time for a GPU target, without a GPU, and read what that
compilation says: shared memory (Triton's metadata), registers and spill bytes (the log of the
ptxas run Triton itself makes, with its own options), the SASS instruction count (the cubin),
whether wgmma is used and how many global -> shared async copies are 16 bytes wide (the PTX).

Uses Triton's own argument specialisation for the target, so the compilation is the one a launch
on that GPU would make. Triton is made to compile even when its cache holds the kernel (a cached
kernel comes without ptxas's log). Needs triton with its NVIDIA backend (ptxas ships in the wheel).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from dataclasses import dataclass

from moebench.compile_check.cubin import ptxas_figures, sass_instructions
from moebench.compile_check.record import Launch


@dataclass
class CompiledLaunch:
    name: str
    variant: str  # kernel name and a hash of what the compilation depends on: one id per distinct compile
    constexprs: dict
    shared_bytes: int
    registers: int
    spill_stores: int  # bytes, from ptxas
    spill_loads: int
    instructions: int  # SASS instructions in the cubin
    uses_wgmma: bool
    async_copies: tuple[int, int] = (0, 0)  # (16-byte, all) cp.async global -> shared copies in the PTX


def _specialize(value) -> tuple[str, str | None]:
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    return native_specialize_impl(BaseBackend, value, False, True, True)[:2]


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


def _variant(key: tuple) -> str:
    return f"{key[0]}#{hashlib.sha1(repr(key).encode()).hexdigest()[:10]}"


def variant_id(launch: Launch) -> str:
    """`<kernel>#<10 hex digits>`: equal for launches that compile the same, stable across runs."""
    return _variant(_source(launch)[3])


@contextlib.contextmanager
def _with_ptxas_log():
    """Within the block Triton compiles even what its cache holds and prints ptxas's log, captured."""
    from triton import knobs

    saved = knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log
    knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log = True, True
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            yield log
    finally:
        knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log = saved


def compile_kernel(launch: Launch, arch: int = 90):
    """(Triton's compiled kernel, the log of its ptxas run) of one recorded launch, for sm_<arch>."""
    import triton
    from triton.backends.compiler import GPUTarget

    source, _, options, _ = _source(launch)
    with _with_ptxas_log() as log:
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    return compiled, log.getvalue()


def compile_launch(launch: Launch, arch: int = 90, cache: dict | None = None) -> CompiledLaunch:
    """Compile one recorded launch for sm_<arch>; `cache` (a dict) reuses identical compilations."""
    _, constexprs, options, key = _source(launch)
    if cache is not None and key in cache:
        return cache[key]
    compiled, log = compile_kernel(launch, arch)
    registers, spill_stores, spill_loads = ptxas_figures(log)
    ptx = compiled.asm["ptx"]
    shown = {k: v for k, v in constexprs.items() if isinstance(v, (bool, int)) and k.isupper()}
    copies = re.findall(r"cp\.async\.c[ga]\.shared\.global\S* \[[^\]]+\], \[[^\]]+\], (\w+)", ptx)
    wide = sum(int(size, 0) == 16 for size in copies)
    result = CompiledLaunch(
        launch.kernel.__name__, _variant(key), {**shown, **options}, compiled.metadata.shared,
        registers, spill_stores, spill_loads, sass_instructions(compiled.asm["cubin"]), "wgmma" in ptx,
        (wide, len(copies)),
    )  # fmt: skip
    if cache is not None:
        cache[key] = result
    return result
