"""Argument helpers shared by subcommands: --preset/--shape, --dtype, --device, --impl, --tokens."""

from __future__ import annotations

import argparse

from moebench.errors import MoEInputError
from moebench.presets import PRESET_NAMES, TINY_PRESETS, get_preset, parse_shape
from moebench.quant.formats import QUANT_FORMATS, get_format
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


def add_quant_arg(parser: argparse.ArgumentParser) -> None:
    """--quant: quantised routed experts (moebench.quant formats), applied to every preset/shape."""
    parser.add_argument(
        "--quant",
        type=csv,
        default=None,
        metavar="FORMAT[,FORMAT]",
        help=f"quantise the routed experts: {', '.join(QUANT_FORMATS)} or int{{4,8}}-g{{G}}[-asym][-fp16|-bf16]; "
        "default presets that the format does not fit (mxfp4: H, I multiples of 32) are left out",
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
    quants = getattr(args, "quant", None)
    if not quants:
        return specs
    explicit = args.preset is not None or bool(args.shape)
    quantised = []
    for fmt in quants:
        get_format(fmt)  # an unknown name is an error even when no preset fits
        for spec in specs:
            try:
                quantised.append(spec.replace(quant=fmt))
            except MoEInputError:
                if explicit:
                    raise
    if not quantised:
        raise MoEInputError(f"--quant: none of the default presets fits {', '.join(quants)}; name one with --preset")
    return quantised


def prepare_device_arg(device: str | None) -> str:
    """--device (default: cuda when available) checked, with the Triton interpreter on for cpu."""
    from moebench.cli import default_device, prepare_device

    return prepare_device(device or default_device())
