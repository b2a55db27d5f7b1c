"""Running the plan inside a deadline: print the plan with its estimates first, then before each
item compare its estimate with the time left and skip, with a line, what cannot finish; write
every output file after each item.

The deadline counts from the start of the process. Estimates start at the device's nominal
figures, switch to the ceilings the first step measures, and each kind of item's estimates are
scaled by how its finished items compared (actual / estimate, clamped to [0.5, 4]).
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

import torch

from moebench.bench.cells import Cells
from moebench.kernels.common.interpreter import interpreting
from moebench.session import plan as plan_mod
from moebench.session.config import SessionConfig
from moebench.session.cost import CostModel, Rates, nominal_rates
from moebench.session.output import Output
from moebench.session.summary import render
from moebench.session.work import Context

SAFETY_S = 10.0  # kept free at the deadline for the last write of $OUT
MIN_SCALED_S = 2.0  # items estimated under this do not move the correction factors
BUDGET_FACTOR, BUDGET_MIN_S = 2.0, 60.0  # an item that can be stopped gets twice its estimate (at least 60 s)
CELL_MEMORY_FRACTION = 0.35  # of the GPU's memory: cells (weights, inputs, references) kept for reuse


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def default_rates(config: SessionConfig) -> Rates:
    """Nominal figures of the device the session runs on, and this host's cores."""
    name = torch.cuda.get_device_name() if config.device == "cuda" and torch.cuda.is_available() else ""
    return replace(nominal_rates(config.device, name), cpu_cores=os.cpu_count() or 1)


class Stopped(Exception):
    """SIGTERM (e.g. `timeout`): stop, write what there is, exit."""


class Runner:
    def __init__(self, config: SessionConfig, out: Path, work: Path, rates: Rates | None = None) -> None:
        self.config = config
        self.start = time.monotonic() - process_age_s()
        self.output = Output(out, work)
        self.model = CostModel(rates or default_rates(config))
        device = torch.device(config.device)
        keep = 1 << 30
        if device.type == "cuda":
            keep = int(torch.cuda.get_device_properties(device).total_memory * CELL_MEMORY_FRACTION)
        self.ctx = Context(config, device, Path(work), self.model, self.output.log,
                           Cells(device, seed=config.seed, keep_bytes=keep))  # fmt: skip
        self.ctx.time_left = self.time_left
        compiled = device.type == "cuda" and not interpreting()
        self.plan = plan_mod.build_plan(config, compiled)
        self.ratios: dict[str, list[float]] = {}
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def time_left(self) -> float:
        return self.config.deadline_s - self.elapsed() - SAFETY_S

    def factor(self, kind: str) -> float:
        ratios = self.ratios.get(kind, [])[-3:]
        return min(4.0, max(0.5, sum(ratios) / len(ratios))) if ratios else 1.0

    def write(self) -> None:
        manifest = {**self.ctx.manifest, "rates": self.model.label(), "deadline_s": self.config.deadline_s,
                    "elapsed_s": round(self.elapsed(), 1), "config": asdict(self.config),
                    "plan": [{k: getattr(i, k) for k in ("step", "label", "kind", "status", "estimate_s", "actual_s",
                                                           "detail")} for i in self.plan]}  # fmt: skip
        summary = render(manifest, self.plan, self.ctx, self.elapsed(), self.config.deadline_s, self.skipped)
        self.output.write(self.ctx, summary, manifest)

    def _broken_device(self) -> str | None:
        if self.ctx.device.type != "cuda":
            return None
        try:
            torch.cuda.synchronize(self.ctx.device)
        except Exception as exc:  # a sticky CUDA error: every later launch fails too
            return f"{type(exc).__name__}: {exc}"
        return None

    def run_item(self, item: plan_mod.Item) -> None:
        started = time.monotonic()
        try:
            item.run(self.ctx)
            item.status = "done"
        except Stopped:
            raise
        except Exception as exc:  # report, never stop the session
            item.status, item.detail = "failed", f"{type(exc).__name__}: {exc}"[:500]
            self.output.log(f"  FAILED {item.label}: {item.detail}")
            self.output.log(traceback.format_exc(limit=4))
        item.actual_s = time.monotonic() - started
        if item.estimate_s >= MIN_SCALED_S:
            self.ratios.setdefault(item.kind, []).append(item.actual_s / item.estimate_s)

    def run(self) -> int:
        log = self.output.log
        plan_mod.estimate(self.plan, self.model)
        log(f"moebench session on {self.config.device}: deadline {self.config.deadline_s:.0f} s from process start")
        log(f"estimates: {self.model.label()}")
        log(plan_mod.plan_table(self.plan, self.config.deadline_s, self.elapsed()))
        previous = signal.signal(signal.SIGTERM, _stop)
        broken, step, stale = None, None, False
        try:
            for item in self.plan:
                if stale:
                    plan_mod.estimate(self.plan, self.model)
                    stale = False
                if item.step != step:
                    step = item.step
                    todo = sum(i.estimate_s * self.factor(i.kind) for i in self.plan if i.step == step)
                    left = self.time_left()
                    fits = "" if todo <= left else " (not all of it fits: what does not is skipped)"
                    log(f"\n== {plan_mod.STEP_TITLES[step]}: estimate {todo:.0f} s, {left:.0f} s left{fits}")
                needed = item.estimate_s * self.factor(item.kind)
                if broken or needed > self.time_left():
                    why = broken or f"needs ~{needed:.0f} s, {max(0.0, self.time_left()):.0f} s left"
                    item.status, item.detail, stale = "skipped", why, True
                    self.skipped.append(f"{item.label}: {why}")
                    log(f"skip {item.label}: {why}")
                    continue
                log(f"{item.label} (~{needed:.0f} s)")
                self.ctx.budget_s = min(self.time_left(), max(BUDGET_MIN_S, BUDGET_FACTOR * needed))
                self.run_item(item)
                broken = self._broken_device()
                if item.kind == "env":
                    stale = True  # measured ceilings: re-estimate what is left
                self.write()
        except Stopped:
            log("stopped (SIGTERM): writing what there is")
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.write()
        log(f"\nsession done in {self.elapsed():.0f} s (deadline {self.config.deadline_s:.0f} s); "
            f"files in {self.output.out}")  # fmt: skip
        return 1 if self.failures() else 0

    def failures(self) -> list[str]:
        bad = [i.label for i in self.plan if i.status == "failed"]
        bad += [f"verify {r['impl']} {r['preset']} T={r['T']}" for r in self.ctx.verify_rows if r["result"] != "PASS"]
        bad += [f"bench {r['impl']} {r['preset']} T={r['T']}" for r in self.ctx.bench_rows if r["status"] != "ok"]
        bad += [t["shard"] for t in self.ctx.tests if t["returncode"] not in (0, 5)]  # 5: no tests selected
        return bad


def _stop(signum, frame) -> None:
    raise Stopped()
