"""`moebench verify`: the parity gate. Every available implementation against the fp64 reference."""

from __future__ import annotations

import argparse
import sys

import torch
from tabulate import tabulate

from moebench import registry
from moebench.cli.common import add_problem_args, add_quant_arg, int_csv, nonneg_int, prepare_device_arg, resolve_specs
from moebench.gradparity import run_grad_case
from moebench.parity import Case, edge_cases, random_cases, run_case
from moebench.presets import spec_label
from moebench.spec import dtype_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="parity gate: every implementation vs the fp64 reference",
        description="The parity gate: every available implementation (or --impl) against one fp64 reference on "
        "fresh random inputs (the seed is printed; replay with --seed), with the edge cases (T=0, T=1, empty "
        "experts, all tokens on one expert, ...). Exits 1 on any failure.",
    )
    add_problem_args(p)
    add_quant_arg(p)
    p.add_argument(
        "--cases", type=nonneg_int, default=2, help="random cases per (impl, preset, dtype) on top of the edge cases"
    )
    p.add_argument(
        "--tokens", type=int_csv, default=None, help="token counts to check instead of the edge cases (e.g. 1,16,128)"
    )
    p.add_argument("--no-edge-cases", action="store_true", help="skip the edge cases")
    p.add_argument("--seed", type=int, default=None, help="fix the input seed (default: fresh random inputs each run)")
    p.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    p.add_argument(
        "--grad", action="store_true", help="also check the gradients (x, router, w1, w2) of impls with a backward"
    )
    p.set_defaults(handler=run)


def cases_for(spec, args) -> list[Case]:
    cases: list[Case] = []
    if args.tokens:
        cases += [Case(f"T={t}", t) for t in args.tokens]
    elif not args.no_edge_cases:
        cases += edge_cases(spec)
    cases += random_cases(args.cases)
    return cases


def _unquantized_column(args: argparse.Namespace, outcome) -> list[str]:
    """The error against the unquantised layer (with --quant only): what quantisation costs, not gated."""
    if not args.quant:
        return []
    value = None if outcome is None else outcome.extra.get("rel_l2_unquantized")
    return [f"{value:.2e}" if value is not None else "-"]


def run(args: argparse.Namespace) -> int:
    device = prepare_device_arg(args.device)
    specs = resolve_specs(args)
    impls = registry.select(args.impl, device)
    print(f"moebench verify on {device}: {len(impls)} implementation(s) x {len(specs)} problem(s)", flush=True)
    rows, failures, skipped, checks, ties = [], 0, [], 0, 0
    for info in impls:
        ok, reason = info.available(device)
        if not ok:
            if args.impl:  # explicitly asked for: unavailable is a failure
                failures += 1
                reason = f"FAILED: asked for with --impl but unavailable: {reason}"
            skipped.append([info.name, reason])
            continue
        for spec in specs:
            problem = info.spec_unsupported(spec)
            if problem:
                skipped.append([info.name, f"{spec_label(spec)} {dtype_name(spec.dtype)}: {problem}"])
                continue
            for case in cases_for(spec, args):
                outcome = run_case(info, spec, case, device, seed=args.seed)
                failures += not outcome.ok
                checks += 1
                res = outcome.result
                ties += res.ties if res else 0
                if not (outcome.ok and args.quiet):
                    rows.append(
                        [
                            info.name,
                            spec_label(spec),
                            outcome.dtype,
                            case.name,
                            "PASS" if outcome.ok else "FAIL",
                            f"{res.rel_l2:.2e}" if res else "-",
                            f"{res.tolerance:.0e}" if res else "-",
                            f"{res.row_error:.2e}" if res else "-",
                            f"{res.row_tolerance:.0e}" if res else "-",
                            res.ties if res else "-",
                            *_unquantized_column(args, outcome),
                            outcome.seed,
                            outcome.error or (res.message if res and not res.ok else outcome.extra.get("note", "")),
                        ]
                    )
                if args.grad and info.backward:
                    grad = run_grad_case(info, spec, case, device, seed=args.seed)
                    failures += not grad.ok
                    checks += 1
                    worst = grad.worst()
                    if not (grad.ok and args.quiet):
                        rows.append(
                            [
                                info.name,
                                spec_label(spec),
                                grad.dtype,
                                f"{case.name} [grad d{worst[0]}]" if worst else f"{case.name} [grad]",
                                "PASS" if grad.ok else "FAIL",
                                f"{worst[1].rel_l2:.2e}" if worst else "-",
                                f"{worst[1].tolerance:.0e}" if worst else "-",
                                "-",
                                "-",
                                "-",
                                *_unquantized_column(args, None),
                                grad.seed,
                                "" if grad.ok else grad.summary(),
                            ]
                        )
    headers = [
        "impl",
        "preset",
        "dtype",
        "case",
        "result",
        "rel_l2",
        "tol",
        "worst_row",
        "row_tol",
        "ties",
        "seed",
        "detail",
    ]
    if args.quant:
        headers.insert(10, "rel_l2 vs unquantised")
    if rows:
        print(tabulate(rows, headers=headers))
    if skipped:
        print(f"\nskipped on {device}:")
        print(tabulate(skipped, headers=["impl", "reason"]))
    print(
        f"\nverify on {device} (torch {torch.__version__}): {'FAILED' if failures else 'all passed'}"
        + f", {checks} checks against the fp64 reference"
        + f", {ties} token(s) with near-tied routing accepted either way"
        + (f", {failures} failure(s)" if failures else "")
    )
    sys.stdout.flush()
    return 1 if failures else 0
