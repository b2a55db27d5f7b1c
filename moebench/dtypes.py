"""The dtypes a layer can be stated in, by their short names ('fp32', 'fp16', 'bf16', 'fp64').

Specs, presets, result rows, file names and the CLI all name a dtype the same way; parse_dtype reads a
name (or an alias such as 'bfloat16', or a torch.dtype) and dtype_name writes one. They live apart from
the spec because they are a vocabulary, not part of the problem record: moebench.spec re-exports both.
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp64": torch.float64,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
_DTYPE_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float64": "fp64",
    "double": "fp64",
}


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """'bf16' / 'bfloat16' / torch.bfloat16 -> torch.bfloat16; anything else raises."""
    if isinstance(value, torch.dtype):
        if value not in DTYPE_NAMES:
            raise MoEInputError(f"dtype: expected one of {sorted(DTYPES)}, got {value}")
        return value
    key = _DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    if key not in DTYPES:
        raise MoEInputError(f"dtype: expected one of {sorted(DTYPES)}, got {value!r}")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES[dtype]
