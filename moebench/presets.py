"""Named layer shapes: the real models' MoE layers and tiny ones that run in seconds on a CPU."""

from __future__ import annotations

import torch

from moebench.errors import UnknownImplementationError
from moebench.spec import MoESpec, RouterSpec, parse_dtype

_SOFTMAX_RENORM = RouterSpec("softmax", renormalize=True)
_SOFTMAX_PLAIN = RouterSpec("softmax", renormalize=False)
_SIGMOID_RENORM = RouterSpec("sigmoid", renormalize=True)

# name -> (E, k, H, I, activation, router)
_SHAPES: dict[str, tuple[int, int, int, int, str, RouterSpec]] = {
    # real models (bf16 by default)
    "mixtral-8x7b": (8, 2, 4096, 14336, "swiglu", _SOFTMAX_RENORM),
    "qwen3-30b-a3b": (128, 8, 2048, 768, "swiglu", _SOFTMAX_RENORM),
    "deepseek-v3": (256, 8, 7168, 2048, "swiglu", _SIGMOID_RENORM),
    "olmoe-1b-7b": (64, 8, 2048, 1024, "swiglu", _SOFTMAX_PLAIN),
    "gpt-oss-20b": (32, 4, 2880, 2880, "swiglu", _SOFTMAX_RENORM),
    # tiny presets for CPU runs and CI; sizes deliberately not multiples of 16 or of block sizes
    "tiny": (4, 2, 32, 48, "swiglu", _SOFTMAX_RENORM),
    "tiny-odd": (5, 2, 36, 52, "swiglu", _SOFTMAX_PLAIN),
    "tiny-k-eq-e": (3, 3, 24, 40, "swiglu", _SOFTMAX_RENORM),
    "tiny-many": (16, 4, 64, 32, "swiglu", _SIGMOID_RENORM),
    "tiny-gelu": (4, 1, 40, 72, "gelu", _SOFTMAX_PLAIN),
    "tiny-relu": (6, 2, 48, 20, "relu", _SOFTMAX_RENORM),
    # small presets: large enough for meaningful CPU timings (the CPU main job), seconds to run
    "small-8x2": (8, 2, 512, 1024, "swiglu", _SOFTMAX_RENORM),
    "small-32x4": (32, 4, 256, 384, "swiglu", _SOFTMAX_RENORM),
}

REAL_PRESETS: tuple[str, ...] = ("mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3", "olmoe-1b-7b", "gpt-oss-20b")
TINY_PRESETS: tuple[str, ...] = tuple(name for name in _SHAPES if name.startswith("tiny"))
SMALL_PRESETS: tuple[str, ...] = tuple(name for name in _SHAPES if name.startswith("small"))
PRESET_NAMES: tuple[str, ...] = tuple(_SHAPES)


def get_preset(name: str, dtype: str | torch.dtype = torch.bfloat16) -> MoESpec:
    """The spec of a named preset in `dtype`."""
    if name not in _SHAPES:
        raise UnknownImplementationError(f"preset: unknown name {name!r}; known: {', '.join(PRESET_NAMES)}")
    e, k, h, i, act, router = _SHAPES[name]
    return MoESpec(e, k, h, i, activation=act, dtype=parse_dtype(dtype), router=router)


def parse_shape(text: str, dtype: str | torch.dtype = torch.bfloat16) -> MoESpec:
    """'E,k,H,I' (optionally ',activation') -> MoESpec; used by --shape on the CLI."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (4, 5):
        from moebench.errors import MoEInputError

        raise MoEInputError(f"shape: expected 'E,k,H,I' or 'E,k,H,I,activation', got {text!r}")
    try:
        e, k, h, i = (int(p) for p in parts[:4])
    except ValueError:
        from moebench.errors import MoEInputError

        raise MoEInputError(f"shape: E,k,H,I must be integers, got {text!r}") from None
    act = parts[4] if len(parts) == 5 else "swiglu"
    return MoESpec(e, k, h, i, activation=act, dtype=parse_dtype(dtype))


def spec_label(spec: MoESpec) -> str:
    """The preset name for a spec if it matches one (ignoring dtype), else 'E,k,H,I'."""
    for name in _SHAPES:
        candidate = get_preset(name, spec.dtype)
        if candidate == spec:
            return name
    e, k, h, i = spec.shape
    return f"{e},{k},{h},{i}"
