"""Per-cell floors and targets for the H100 grid, before any GPU time (METHOD: "two numbers first").

For each real preset x T: the FLOPs (moebench's own count) and the expert-weight bytes expected under
uniform routing (E * (1 - (1 - k/E)^T) distinct experts), over the H100 ceilings measured in this
workplace, give the time floor and whether the cell is bound by bytes or by arithmetic. Beside them:
the best peer's time from the anchors file (when given) and the issue's targets, as the time each
cell must reach. Prints a markdown table.

    python scripts/h100_targets.py [--anchors ../shared/ANCHORS.md] > notes/h100-targets.md
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import torch

from moebench.presets import REAL_PRESETS, get_preset
from moebench.session.cost import expected_active_experts

GEMM_TFLOPS = 790.0  # dense bf16 GEMM ceiling, H100, measured in this workplace
COPY_GBPS = 3000.0  # device-to-device copy, bytes read + written, same
TOKENS = (1, 16, 128, 1024, 4096, 16384)
GEMM_TARGET = {"mixtral-8x7b": 0.70, "deepseek-v3": 0.70, "gpt-oss-20b": 0.70}  # at T = 16384
COPY_TARGET = {"mixtral-8x7b": 0.85, "deepseek-v3": 0.85}  # at T <= 16


def read_anchors(path: Path) -> dict[tuple[str, int], float]:
    """(preset, T) -> the best peer's median ms, from the anchors table's rows."""
    best = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not re.fullmatch(r"\d+", cells[1]):
            continue
        times = [float(c) for c in cells[3:5] if re.fullmatch(r"[\d.]+", c)]  # grouped_mm, fused Triton
        if times:
            best[(cells[0].split()[0], int(cells[1]))] = min(times)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "ANCHORS.md")
    args = parser.parse_args(argv)
    anchors = read_anchors(args.anchors) if args.anchors.is_file() else {}
    print(f"Ceilings: {GEMM_TFLOPS:.0f} TFLOP/s dense bf16 GEMM, {COPY_GBPS:.0f} GB/s copy (H100, this workplace).")
    print(f"Anchors: {args.anchors.name if anchors else 'none found'}. Times in ms; bf16.\n")
    print("| preset | T | GFLOP | weight MB | floor ms | bound | best peer ms | peer / floor | target ms | why |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    headroom = []
    for name in REAL_PRESETS:
        spec = get_preset(name, torch.bfloat16)
        for tokens in TOKENS:
            flops = spec.flops(tokens)
            active = expected_active_experts(spec.num_experts, spec.top_k, tokens)
            weight_bytes = spec.expert_weight_bytes(1) * active
            math_ms = flops / (GEMM_TFLOPS * 1e12) * 1e3
            bytes_ms = weight_bytes / (COPY_GBPS * 1e9) * 1e3
            floor = max(math_ms, bytes_ms)
            peer = anchors.get((name, tokens))
            targets = [(peer, "best peer")] if peer else []
            if tokens == 16384 and name in GEMM_TARGET:
                targets.append((math_ms / GEMM_TARGET[name], f"{GEMM_TARGET[name]:.0%} of GEMM"))
            if tokens <= 16 and name in COPY_TARGET:
                targets.append((bytes_ms / COPY_TARGET[name], f"{COPY_TARGET[name]:.0%} of copy"))
            target, why = min(targets) if targets else (float("nan"), "")
            if peer:
                headroom.append(peer / floor)
            print(
                f"| {name} | {tokens} | {flops / 1e9:.1f} | {weight_bytes / 1e6:.0f} | {floor:.3f} | "
                f"{'math' if math_ms >= bytes_ms else 'bytes'} | {peer if peer else '-'} | "
                f"{peer / floor if peer else float('nan'):.1f} | {target:.3f} | {why} |"
            )
    if headroom:
        geomean = math.exp(sum(map(math.log, headroom)) / len(headroom))
        print(
            f"\nGeomean over {len(headroom)} cells of best peer / floor: {geomean:.2f}x: the most any implementation "
            "could gain over the best peer on this grid, were every cell at its floor."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
