"""`moebench list`: implementations with availability (and why not), and presets."""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate

from moebench import registry
from moebench.cli import prepare_device
from moebench.presets import PRESET_NAMES, get_preset
from moebench.spec import dtype_name

INTERPRETER_NOTE = (
    "yes (interpreter): Triton kernels on CPU tensors run in Triton's interpreter; moebench's commands turn it on "
    "for --device cpu; in your own Python start with TRITON_INTERPRET=1 (e.g. TRITON_INTERPRET=1 python app.py)."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="implementations (with availability) and presets",
        description="List every registered implementation with its availability on each device (and why not), "
        "its dtypes and capabilities, then the presets.",
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda", "both"), default="both", help="check availability on cpu, cuda or both"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    devices = ["cpu", "cuda"] if args.device == "both" else [args.device]
    if "cpu" in devices and not torch.cuda.is_available():
        prepare_device("cpu")  # Triton kernels run in the interpreter on a CPU-only machine
    rows = []
    for info in registry.all_impls():
        row = [info.name, info.kind]
        for device in devices:
            ok, reason = info.available(device)
            interpreted = ok and device == "cpu" and "triton" in info.requires
            row.append(("yes (interpreter)" if interpreted else "yes") if ok else f"no: {reason}")
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
    print(f"\n{INTERPRETER_NOTE}\n")
    preset_rows = []
    for name in PRESET_NAMES:
        spec = get_preset(name)
        e, k, h, i = spec.shape
        router = spec.router.scoring + ("+renorm" if spec.router.renormalize else "")
        preset_rows.append([name, e, k, h, i, spec.activation, router, dtype_name(spec.dtype)])
    print(tabulate(preset_rows, headers=["preset", "E", "k", "H", "I", "activation", "router", "default dtype"]))
    return 0
