"""`moebench list`: implementations with availability (and why not), and presets."""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate

from moebench import registry
from moebench.cli import prepare_device
from moebench.presets import PRESET_NAMES, get_preset
from moebench.spec import dtype_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="implementations (with availability) and presets")
    p.add_argument("--device", default=None, help="check availability on cpu or cuda (default: both)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    devices = [args.device] if args.device else ["cpu", "cuda"]
    if "cpu" in devices and not torch.cuda.is_available():
        prepare_device("cpu")  # Triton kernels run in the interpreter on a CPU-only machine
    rows = []
    for info in registry.all_impls():
        row = [info.name, info.kind]
        for device in devices:
            ok, reason = info.available(device)
            row.append("yes" if ok else f"no: {reason}")
        caps = [dtype_name(d) for d in (torch.float32, torch.float16, torch.bfloat16) if info.supports(d)]
        flags = []
        if info.backward:
            flags.append("backward")
        if info.exportable:
            flags.append("export")
        if info.graph_safe:
            flags.append("cuda-graph")
        if info.drops_tokens:
            flags.append("DROPS TOKENS")
        row += [",".join(caps), " ".join(flags), info.description]
        rows.append(row)
    headers = ["implementation", "kind"] + [f"on {d}" for d in devices] + ["dtypes", "capabilities", "what it is"]
    print(tabulate(rows, headers=headers))
    print()
    preset_rows = []
    for name in PRESET_NAMES:
        spec = get_preset(name)
        e, k, h, i = spec.shape
        router = spec.router.scoring + ("+renorm" if spec.router.renormalize else "")
        preset_rows.append([name, e, k, h, i, spec.activation, router, dtype_name(spec.dtype)])
    print(tabulate(preset_rows, headers=["preset", "E", "k", "H", "I", "activation", "router", "default dtype"]))
    return 0
