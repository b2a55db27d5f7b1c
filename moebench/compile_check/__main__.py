"""`python -m moebench.compile_check`: record, compile and report every launch (see the package doc)."""

from __future__ import annotations

import argparse
import sys

from moebench.compile_check import __doc__ as DOC
from moebench.compile_check.ptxas import CompiledLaunch, compile_launch
from moebench.compile_check.record import IMPLS, record_launches, space_configs
from moebench.kernels.common.interpreter import interpreting
from moebench.presets import get_preset
from moebench.spec import parse_dtype


def _report(tokens: int, compiled: CompiledLaunch, grid) -> str:
    return (
        f"T={tokens} {compiled.name}: smem={compiled.shared_bytes} regs={compiled.registers} "
        f"spill={compiled.spill_stores}/{compiled.spill_loads} sass={compiled.instructions} "
        f"wgmma={compiled.uses_wgmma} "
        f"cp.async16={compiled.async_copies[0]}/{compiled.async_copies[1]} grid={grid} {compiled.constexprs}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moebench.compile_check", description=DOC.splitlines()[0])
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
                spilling += new and bool(compiled.spill_stores or compiled.spill_loads)
                print(_report(tokens, compiled, launch.grid))
    print(f"compile_check: {len(cache)} distinct compilations, {failures} failed, {spilling} spill")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
