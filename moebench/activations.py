"""The FFN activations, one definition used by the reference and the torch implementations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moebench.spec import MoESpec


def apply_activation(spec: MoESpec, h1: torch.Tensor) -> torch.Tensor:
    """h1: [..., G*I] (first-layer output) -> [..., I].

    swiglu: silu(gate) * up with gate = h1[..., :I], up = h1[..., I:]
    gelu:   exact (erf) GELU;  relu: max(h1, 0).
    """
    if spec.activation == "swiglu":
        gate, up = h1[..., : spec.intermediate], h1[..., spec.intermediate :]
        return F.silu(gate) * up
    if spec.activation == "gelu":
        return F.gelu(h1)
    return F.relu(h1)
