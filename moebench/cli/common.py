"""Argument helpers shared by subcommands: --preset/--shape, --dtype, --device, --impl, --tokens.

Values are checked while parsing (argparse `type=` functions raising ArgumentTypeError), so a bad
value is a one-line usage error naming the argument, before any work starts.
"""

from __future__ import annotations

import argparse
import os

import torch

from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.presets import PRESET_NAMES, TINY_PRESETS, get_preset, parse_shape
from moebench.quant.formats import QUANT_FORMATS, get_format
from moebench.spec import MoESpec, dtype_name, parse_dtype

DEVICES = ("cpu", "cuda")
CLI_DTYPES = ("fp32", "fp16", "bf16")  # what the commands time and verify (fp64 is the reference's)


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str, *, minimum: int) -> list[int]:
    try:
        values = [int(part) for part in csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    if any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return values


def int_csv(text: str) -> list[int]:
    """Token counts, 0 allowed (verify checks T=0)."""
    return _ints(text, minimum=0)


def positive_int_csv(text: str) -> list[int]:
    """Token counts to time: at least 1."""
    return _ints(text, minimum=1)


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int(text, 1)


def nonneg_int(text: str) -> int:
    return _int(text, 0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def dtype_csv(text: str) -> list[str]:
    names = csv(text)
    if not names:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(CLI_DTYPES)}, got {text!r}")
    out = []
    for name in names:
        try:
            canonical = dtype_name(parse_dtype(name))
        except MoEInputError:
            canonical = None
        if canonical not in CLI_DTYPES:
            raise argparse.ArgumentTypeError(f"expected some of {', '.join(CLI_DTYPES)}, got {name!r}")
        out.append(canonical)
    return out


def preset_csv(text: str) -> list[str]:
    names = csv(text)
    unknown = [n for n in names if n.partition("+")[0] not in PRESET_NAMES]  # name+format: quantised experts
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown preset {(unknown or [text])[0]!r}; known: {', '.join(PRESET_NAMES)}")
    return names


def impl_name(text: str) -> str:
    from moebench import registry

    try:
        return registry.get(text.strip()).name
    except UnknownImplementationError:
        raise argparse.ArgumentTypeError(
            f"unknown implementation {text!r}; registered: {', '.join(registry.names())}"
        ) from None


def impl_csv(text: str) -> list[str]:
    names = csv(text)
    if not names:
        raise argparse.ArgumentTypeError(f"expected implementation names, got {text!r}")
    return [impl_name(n) for n in names]


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default=None, help="cpu or cuda (default: cuda when available)")


def add_problem_args(parser: argparse.ArgumentParser, *, default_presets: str = "tiny presets", one=False) -> None:
    """--preset, --shape, --dtype, --device, --impl. one=True: the command takes one of each."""
    several = "" if one else "comma-separated "
    parser.add_argument(
        "--preset",
        type=preset_csv,
        default=None,
        help=f"{'a preset' if one else 'comma-separated presets'} ({', '.join(PRESET_NAMES)}); "
        f"default: {default_presets}",
    )
    parser.add_argument(
        "--shape", action="append", default=None, metavar="E,k,H,I", help="a custom shape E,k,H,I[,activation]"
    )
    parser.add_argument("--dtype", type=dtype_csv, default=None, help=f"{several}dtype: {', '.join(CLI_DTYPES)}")
    add_device_arg(parser)
    parser.add_argument(
        "--impl",
        type=impl_csv,
        default=None,
        help="the implementation the file stands for (default: the baseline)"
        if one
        else "comma-separated implementations (default: all available; see 'moebench list')",
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
    specs: list[MoESpec] = []
    presets = args.preset if args.preset is not None else ([] if args.shape else list(default_presets))
    for dtype in dtypes:
        specs += [get_preset(name, dtype) for name in presets]
        for text in args.shape or []:
            try:
                specs.append(parse_shape(text, dtype))
            except (MoEInputError, ValueError) as exc:
                raise MoEInputError(f"--shape: {str(exc).removeprefix('shape: ')}") from None
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


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare_device(device: str) -> str:
    """Validate a device; on the CPU, switch Triton to its interpreter before any kernel loads."""
    if device not in DEVICES:
        raise MoEInputError(f"--device: expected 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise MoEInputError("--device: 'cuda' was asked for but this machine has no CUDA GPU (or torch has no CUDA)")
    if device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return device


def prepare_device_arg(device: str | None) -> str:
    """For commands that run implementations: --device (default: cuda when available) checked, the
    Triton interpreter on for cpu, and MOEBENCH_PIN_CONFIG (which applies to every run) validated."""
    from moebench.tuning import check_pinned_env

    device = prepare_device(device or default_device())
    check_pinned_env()
    return device
