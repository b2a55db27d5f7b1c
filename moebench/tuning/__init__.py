"""Autotuning: search spaces, the config cache under results/configs/, and `moebench tune`.

`lookup_config` is what implementations call when no explicit config is given.
"""

from __future__ import annotations

import torch

from moebench.spec import MoESpec


def lookup_config(impl: str, kernel: str, spec: MoESpec, num_tokens: int, device: torch.device) -> dict | None:
    """The cached tuned config for (impl, kernel, spec, T, device), or None (use the default)."""
    return None
