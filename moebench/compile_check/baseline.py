"""The static gate's baseline (one JSON file per Triton version under results/compile/) and the
comparison of a sweep against it.

A site passes when its kernel compiles, does not spill, fits sm_90's shared memory, and its
registers and SASS instruction count have not risen beyond the margins below over what the
baseline recorded for the same site. A site of a kernel the baseline does not know is new code
(reported, not failed); a site of a known kernel that the baseline lacks fails: a default launch
changed, and moving the baseline is a commit with the reason (`... gate record`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from moebench.compile_check.ptxas import CompiledLaunch
from moebench.compile_check.sweep import Site
from moebench.kernels.common.hopper import SMEM_LIMIT_BYTES

BASELINE_DIR = Path(__file__).resolve().parents[2] / "results" / "compile"

# Registers: sm_90 allocates them per warp in units of 256, i.e. 8 per thread, so a rise of up to
# 8 moves a kernel by at most one allocation step; more is a real change in what the kernel holds.
REGISTER_MARGIN = 8
# SASS instructions: ptxas pads each kernel's code with NOPs to a multiple of 8 instructions, so a
# one-instruction change can add 8 (7.7% of the smallest kernel, 104 instructions); 10% passes
# that and small epilogue edits, while a doubled loop body or an unrolled loop adds far more.
INSTRUCTION_MARGIN = 0.10
FIGURES = ("registers", "spill_stores", "spill_loads", "shared_bytes", "instructions")


def baseline_path(triton_version: str, directory: Path = BASELINE_DIR) -> Path:
    return directory / f"baseline-triton-{triton_version}.json"


def baseline_versions(directory: Path = BASELINE_DIR) -> list[str]:
    return sorted(p.stem.removeprefix("baseline-triton-") for p in directory.glob("baseline-triton-*.json"))


def problems_of(compiled: CompiledLaunch | str) -> list[str]:
    """What fails a variant whatever the baseline says: no compilation, a spill, too much shared memory."""
    if isinstance(compiled, str):
        return [f"does not compile: {compiled}"]
    out = []
    if compiled.spill_stores or compiled.spill_loads:
        out.append(f"spills ({compiled.spill_stores} B stored, {compiled.spill_loads} B loaded)")
    if compiled.shared_bytes > SMEM_LIMIT_BYTES:
        out.append(f"needs {compiled.shared_bytes} B of shared memory, sm_90 allows {SMEM_LIMIT_BYTES}")
    return out


def to_json(compiled: dict[str, CompiledLaunch], site_variant: dict[Site, str], about: dict) -> dict:
    """The baseline record: `about` (versions, date, command) and per variant its figures and sites."""
    variants = {}
    for variant, launch in sorted(compiled.items()):
        sites = sorted(str(site) for site, v in site_variant.items() if v == variant)
        figures = {name: getattr(launch, name) for name in FIGURES}
        variants[variant] = {"kernel": launch.name, "config": launch.constexprs, **figures, "sites": sites}
    return {**about, "variants": variants}


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")


@dataclass
class Verdict:
    failures: dict[str, list[Site]] = field(default_factory=dict)  # message -> the sites it holds for
    new: dict[str, list[Site]] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    drift: tuple[float, float] = (0.0, 0.0)  # lowest and highest relative change of instructions
    lower: int = 0  # sites with fewer registers or instructions than recorded: `record` would tighten

    def lines(self, shown: int = 3) -> list[str]:
        out = []
        for tag, groups in (("FAIL", self.failures), ("new", self.new)):
            for message, sites in groups.items():
                more = f" (+{len(sites) - shown} more)" if len(sites) > shown else ""
                out.append(f"{tag}: {message} at {', '.join(map(str, sites[:shown]))}{more}")
        out += [f"gone: {site} (in the baseline, not launched now)" for site in self.gone]
        return out


def compare(record: dict, compiled: dict, site_variant: dict[Site, str], in_scope) -> Verdict:
    """The verdict of a sweep against a baseline record; `in_scope(site)` says which of the
    baseline's sites the sweep covered (the others cannot be gone)."""
    base_site = {Site.parse(s): v for v, entry in record["variants"].items() for s in entry["sites"]}
    known = {entry["kernel"] for entry in record["variants"].values()}
    verdict, changes = Verdict(), []

    def note(groups: dict, message: str, site: Site) -> None:
        groups.setdefault(message, []).append(site)

    for site, variant in sorted(site_variant.items(), key=lambda item: str(item[0])):
        launch = compiled[variant]
        for problem in problems_of(launch):
            note(verdict.failures, f"{variant} {problem}", site)
        if isinstance(launch, str):
            continue
        if site not in base_site:
            if site.kernel in known:
                note(verdict.failures, f"{variant}: a launch of a known kernel the baseline lacks", site)
            else:
                note(verdict.new, f"{variant}: a kernel the baseline does not know", site)
            continue
        base = record["variants"][base_site[site]]
        was = "" if base_site[site] == variant else f" (recorded as {base_site[site]})"
        if launch.registers > base["registers"] + REGISTER_MARGIN:
            rise = f"{base['registers']} -> {launch.registers} registers, margin +{REGISTER_MARGIN}"
            note(verdict.failures, f"{variant}{was}: {rise}", site)
        change = launch.instructions / base["instructions"] - 1
        changes.append(change)
        if change > INSTRUCTION_MARGIN:
            rise = f"{base['instructions']} -> {launch.instructions} SASS instructions ({change:+.1%})"
            note(verdict.failures, f"{variant}{was}: {rise}, margin +{INSTRUCTION_MARGIN:.0%}", site)
        verdict.lower += launch.registers < base["registers"] or change < 0
    verdict.gone = sorted(str(s) for s in base_site if in_scope(s) and s not in site_variant)
    verdict.drift = (min(changes, default=0.0), max(changes, default=0.0))
    return verdict


def summary_figures(compiled: dict) -> dict:
    ok = [c for c in compiled.values() if not isinstance(c, str)]
    return {
        "spilling": sum(bool(c.spill_stores or c.spill_loads) for c in ok),
        "registers": max((c.registers for c in ok), default=0),
        "shared_bytes": max((c.shared_bytes for c in ok), default=0),
        "failed": len(compiled) - len(ok),
    }
