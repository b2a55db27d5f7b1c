"""`moebench list`: implementations with availability (and why not), and presets."""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate

from moebench import registry
from moebench.cli import prepare_device
from moebench.presets import PRESET_NAMES, PRESET_SOURCES, get_preset
from moebench.spec import FEATURES, dtype_name

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
    p.add_argument("--presets", action="store_true", help="only the presets: each one's full spec and its source")
    p.set_defaults(handler=run)


def _refused(info: registry.ImplInfo) -> str:
    """The options `info` refuses, with the reason; or, when it takes them all, its limits on combining them."""
    refused = info.refused_features
    if not refused:
        return info.features_note or "-"
    what = "every spec option" if len(refused) == len(FEATURES) else ", ".join(refused)
    return what + (f" ({info.features_note})" if info.features_note else "")


def print_presets(sources: bool) -> None:
    """Each preset's full spec as a table (moebench.spec.MoESpec.describe_parts), then the published source
    of every model preset's numbers."""
    rows = []
    for name in PRESET_NAMES:
        spec, parts = get_preset(name), get_preset(name).describe_parts()
        rows.append([name, *spec.shape, parts["expert"], parts["router"], parts["shared"] or "-", parts["dtype"]])
    headers = ["preset", "E", "k", "H", "I", "expert FFN", "router", "shared (S x I_s)", "default dtype"]
    print(tabulate(rows, headers=headers))
    if sources:
        print("\nsources of the model presets' numbers:")
        for name, source in PRESET_SOURCES.items():
            print(f"  {name}: {source}")


def run(args: argparse.Namespace) -> int:
    if args.presets:
        print_presets(sources=True)
        return 0
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
        row += [",".join(caps), " ".join(flags), _refused(info), info.description]
        rows.append(row)
    headers = ["implementation", "kind"] + [f"on {d}" for d in devices]
    print(tabulate(rows, headers=headers + ["dtypes", "capabilities", "refuses", "what it is"]))
    print(f"\n{INTERPRETER_NOTE}\n")
    print_presets(sources=False)
    return 0
