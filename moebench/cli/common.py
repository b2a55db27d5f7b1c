"""Argument helpers shared by subcommands: --preset/--shape, --dtype, --device, --impl, --tokens."""

from __future__ import annotations

import argparse

from moebench.errors import MoEInputError
from moebench.presets import PRESET_NAMES, TINY_PRESETS, get_preset, parse_shape
from moebench.spec import MoESpec, parse_dtype


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def int_csv(text: str) -> list[int]:
    try:
        values = [int(part) for part in csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def add_problem_args(parser: argparse.ArgumentParser, *, default_presets: str = "tiny presets") -> None:
    parser.add_argument(
        "--preset",
        type=csv,
        default=None,
        help=f"comma-separated presets ({', '.join(PRESET_NAMES)}); default: {default_presets}",
    )
    parser.add_argument("--shape", action="append", default=None, metavar="E,k,H,I", help="a custom shape (repeatable)")
    parser.add_argument("--dtype", type=csv, default=None, help="comma-separated dtypes: fp32,fp16,bf16")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--impl", type=csv, default=None, help="comma-separated implementations (default: all available)"
    )


def resolve_specs(
    args: argparse.Namespace,
    default_presets: tuple[str, ...] = TINY_PRESETS,
    default_dtypes: tuple[str, ...] = ("fp32", "bf16"),
) -> list[MoESpec]:
    dtypes = [parse_dtype(d) for d in (args.dtype or default_dtypes)]
    if not dtypes:
        raise MoEInputError("--dtype: expected at least one dtype")
    specs: list[MoESpec] = []
    presets = args.preset if args.preset is not None else ([] if args.shape else list(default_presets))
    for dtype in dtypes:
        specs += [get_preset(name, dtype) for name in presets]
        specs += [parse_shape(text, dtype) for text in (args.shape or [])]
    return specs


def prepare_device_arg(device: str | None) -> str:
    """--device (default: cuda when available) checked, with the Triton interpreter on for cpu."""
    from moebench.cli import default_device, prepare_device

    return prepare_device(device or default_device())
