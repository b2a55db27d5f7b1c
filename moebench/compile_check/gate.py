"""The static gate for the Triton kernels (no GPU): compile every default launch of triton_grouped
and block_sparse (forward, and block_sparse's backward) of the five real presets, and of triton_grouped
on quantised experts (moebench.compile_check.sweep.QUANT_GATE_PRESETS), at the GPU token counts for
sm_90, each distinct compilation once, and compare registers, spills, shared memory and SASS
instruction count with the baseline committed for the installed Triton version.

    TRITON_INTERPRET=0 python -m moebench.compile_check.gate            # check (CI: .ci/kernel_gate)
    TRITON_INTERPRET=0 python -m moebench.compile_check.gate record     # rewrite the baseline
    TRITON_INTERPRET=0 bash scripts/triton36_env.sh python -m moebench.compile_check.gate   # Triton 3.6

The baseline is results/compile/baseline-triton-<version>.json; moving it is a commit that says
why (a kernel or a default config changed on purpose). `record` refuses a sweep in which anything
fails to compile, spills or exceeds sm_90's shared memory. With no baseline for the installed
Triton (or its ptxas), `check` skips with one line naming the versions. Failure rules and margins:
moebench.compile_check.baseline. --presets/--tokens/--impl/--kernel/--config narrow the sweep or
force a config (the gate's tests plant a spill and an instruction-count rise that way).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import sys
import time
from pathlib import Path

from moebench.compile_check.baseline import (
    baseline_path,
    baseline_versions,
    compare,
    problems_of,
    summary_figures,
    to_json,
    write,
)
from moebench.compile_check.sweep import GATE_IMPLS, GATE_PRESETS, GPU_TOKENS, compile_sites, record_sites
from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.kernels.common.hopper import SMEM_LIMIT_BYTES
from moebench.kernels.common.interpreter import interpreting

ARCH = 90


def _csv(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m moebench.compile_check.gate", description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", choices=("check", "record"), default="check")
    p.add_argument("--presets", type=_csv, default=list(GATE_PRESETS))
    p.add_argument("--tokens", type=lambda s: [int(t) for t in _csv(s)], default=list(GPU_TOKENS))
    p.add_argument("--impl", choices=tuple(GATE_IMPLS), help="one implementation (default: both)")
    p.add_argument("--kernel", type=_csv, help="only these kernels' launches (names, comma-separated)")
    p.add_argument("--config", type=json.loads, help="check only: a config (JSON) for --impl in place of its defaults")
    p.add_argument("--baseline", type=Path, help="default: results/compile/baseline-triton-<installed version>.json")
    p.add_argument("--workers", type=int, help="compile processes (default: one per core)")
    p.add_argument("--summary", type=Path, help="also append the summary line to this file")
    return p


def _versions() -> tuple[str, str]:
    import triton
    from triton.backends.nvidia.compiler import get_ptxas

    return triton.__version__, get_ptxas(ARCH).version


def _skip_reason(record: dict | None, triton: str, ptxas: str) -> str | None:
    if record is None:
        known = ", ".join(baseline_versions()) or "none"
        return f"kernel gate: skipped: no baseline for the installed triton {triton} (baselines: triton {known})"
    if record["triton"] != triton or record["ptxas"] != ptxas:
        return (
            f"kernel gate: skipped: installed triton {triton} / ptxas {ptxas}, "
            f"baseline recorded with triton {record['triton']} / ptxas {record['ptxas']}"
        )
    return None


def _check_args(args, parser) -> None:
    partial = args.presets != list(GATE_PRESETS) or args.tokens != list(GPU_TOKENS) or args.impl or args.kernel
    if args.config is not None and not args.impl:
        parser.error("--config needs --impl (a config belongs to one implementation)")
    if args.command == "record" and args.config is not None:
        parser.error("record: the baseline holds the default configs; --config is for check")
    if args.command == "record" and partial and args.baseline is None:
        parser.error("record: a narrowed sweep needs --baseline PATH (the committed baseline is the full sweep)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(args, parser)
    if interpreting():
        print("kernel gate: unset TRITON_INTERPRET (the interpreter replaces compiled kernels)", file=sys.stderr)
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default, said aloud (3.9 warns otherwise)
    start = time.time()
    triton, ptxas = _versions()
    path = args.baseline or baseline_path(triton)
    record = json.loads(path.read_text()) if path.exists() else None
    if args.command == "check":
        if record is None and args.baseline is not None:
            parser.error(f"--baseline: no such file {path}")
        reason = _skip_reason(record, triton, ptxas)
        if reason:
            return _finish(reason, args.summary, 0)

    impls = (args.impl,) if args.impl else tuple(GATE_IMPLS)
    try:
        sites = record_sites(args.presets, args.tokens, impls=impls, kernels=args.kernel, config=args.config)
    except (MoEInputError, UnknownImplementationError) as exc:  # a bad --presets or --config
        parser.error(str(exc))
    if not sites:
        parser.error("no launch matches --presets/--tokens/--impl/--kernel")
    compiled, site_variant = compile_sites(sites, ARCH, args.workers)
    fig = summary_figures(compiled)
    head = f"kernel gate, triton {triton} (ptxas {ptxas}, sm_{ARCH}): {len(compiled)} variants, {len(sites)} sites"
    figures = f"{fig['spilling']} spilling, max {fig['registers']} regs, "
    figures += f"max smem {fig['shared_bytes']}/{SMEM_LIMIT_BYTES} B"
    figures += f", {fig['failed']} not compiled" if fig["failed"] else ""

    if args.command == "record":
        problems = [f"{v} {p}" for v, c in sorted(compiled.items()) for p in problems_of(c)]
        if problems:
            print("\n".join(problems))
            return _finish(f"{head}; {figures}: NOT RECORDED (fix these first)", args.summary, 1, start)
        about = {
            "about": "static kernel gate baseline (moebench.compile_check.gate); move it in a commit that says why",
            "triton": triton,
            "ptxas": ptxas,
            "arch": f"sm_{ARCH}",
            "date": datetime.date.today().isoformat(),
            "command": " ".join(["python -m moebench.compile_check.gate", *(sys.argv[1:] if argv is None else argv)]),
            "presets": args.presets,
            "tokens": args.tokens,
        }
        write(path, to_json(compiled, site_variant, about))
        return _finish(f"{head}; {figures}: recorded in {path}", args.summary, 0, start)

    def in_scope(site) -> bool:
        return (
            site.preset in args.presets and site.tokens in args.tokens and site.impl in impls
            and (args.kernel is None or site.kernel in args.kernel)
        )  # fmt: skip

    verdict = compare(record, compiled, site_variant, in_scope)
    for line in verdict.lines():
        print(line)
    low, high = verdict.drift
    tail = f"SASS {low:+.1%}..{high:+.1%}, {len(verdict.new)} new, {len(verdict.gone)} gone"
    tail += f", {verdict.lower} sites below the baseline" if verdict.lower else ""
    tail += f": FAIL ({len(verdict.failures)} failures)" if verdict.failures else ": PASS"
    return _finish(f"{head}; {figures}; {tail}", args.summary, 1 if verdict.failures else 0, start)


def _finish(line: str, summary: Path | None, status: int, start: float | None = None) -> int:
    if start is not None:
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(u.ru_utime + u.ru_stime for u in usage)
        line += f" ({time.time() - start:.0f} s, CPU {cpu:.0f} s)"
    print(line)
    if summary is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        with summary.open("a") as f:
            f.write(line + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
