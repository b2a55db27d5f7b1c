"""`moebench session`: everything a lent GPU should do, in priority order, inside a deadline.

    moebench session --out "$OUT"                      # on the GPU machine (default deadline 540 s)
    moebench session --device cpu --out /tmp/s         # the same flow on tiny presets, interpreter
    moebench session --plan-only --device cuda --nominal h200   # the plan and its estimates, anywhere

See moebench.session for the steps, the cost model and the files written.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from moebench.errors import MoEInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "session",
        help="a whole GPU session in one command: tests, verify, bench, tune, in a deadline",
        description="Run everything a GPU session needs in priority order (environment and ceilings, the GPU "
        "tests, verify, CUDA-graph bench, tuned vs default, the rest) within a deadline: the plan is printed "
        "first with each step's estimate, a step that cannot finish in the time left is skipped with a line, "
        "and the files in --out are complete after every step.",
    )
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default=None,
        help="cuda (the GPU session) or cpu (tiny presets, interpreter)",
    )
    p.add_argument("--deadline", type=float, default=None, help="seconds from process start (default 540)")
    p.add_argument("--out", default=None, help="folder for the result files (default: $OUT)")
    p.add_argument("--work", default=None, help="working folder, packed into session.tar.gz (default: a temp dir)")
    p.add_argument("--seed", type=int, default=None, help="fix the input seeds (default: fresh, recorded)")
    p.add_argument("--plan-only", action="store_true", help="print the plan with its estimates and exit")
    p.add_argument("--nominal", default=None, help="with --plan-only: estimate at these figures (h200, h100, gpu, cpu)")
    p.set_defaults(handler=run)


def _plan_only(config, nominal: str | None) -> int:
    from moebench.session import plan as plan_mod
    from moebench.session.cost import NOMINAL, CostModel
    from moebench.session.runner import default_rates

    if nominal is not None and nominal not in NOMINAL:
        raise MoEInputError(f"--nominal: expected one of {', '.join(NOMINAL)}, got {nominal!r}")
    rates = default_rates(config) if nominal is None else NOMINAL[nominal]
    model = CostModel(rates)
    plan = plan_mod.build_plan(config, compiled=config.device == "cuda")
    plan_mod.estimate(plan, model)
    print(f"estimates: {model.label()}")
    startup = rates.startup_s
    print(plan_mod.plan_table(plan, config.deadline_s, startup))
    total = startup
    for item in plan:
        total += item.estimate_s
        print(f"  {item.step:<11} {item.label:<45} {item.estimate_s:7.1f} s  (cumulative {total:6.0f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    from moebench.cli import default_device, prepare_device
    from moebench.session.config import for_device

    device = args.device or default_device()
    if device not in ("cpu", "cuda"):
        raise MoEInputError(f"--device: expected 'cpu' or 'cuda', got {device!r}")
    if args.deadline is not None and args.deadline <= 0:
        raise MoEInputError(f"--deadline: expected positive seconds, got {args.deadline}")
    config = for_device(device).with_deadline(args.deadline)
    if args.seed is not None:
        from dataclasses import replace

        config = replace(config, seed=args.seed)
    if args.plan_only:
        if device == "cpu":
            prepare_device("cpu")
        return _plan_only(config, args.nominal)
    prepare_device(device)
    out = args.out or os.environ.get("OUT")
    if not out:
        raise MoEInputError("--out: name the folder for the result files (or set OUT)")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="moebench-session-"))
    from moebench.session.runner import Runner

    return Runner(config, Path(out), work).run()
