"""Small readers the family converters share: attributes looked up in order, parameters, activations.

Nothing here imports transformers: modules are read through their attributes and class names only.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from moebench.errors import MoEInputError

_MISSING = object()


def first_attr(owners: Iterable[object], names: Iterable[str], kind: type | tuple[type, ...]):
    """The first attribute among `names` on the first of `owners` that has one of type `kind`, else None.

    Lets one reader serve transformers versions that named a field differently (n_group / num_group) and
    modules that keep it on the router, the block or the config.
    """
    names = tuple(names)
    for owner in owners:
        if owner is None:
            continue
        for name in names:
            value = getattr(owner, name, _MISSING)
            if value is not _MISSING and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
                return value
    return None


def config_of(*modules: nn.Module | None) -> object | None:
    """The transformers config a module keeps (`.config`), if any of `modules` has one."""
    for module in modules:
        config = getattr(module, "config", None)
        if config is not None:
            return config
    return None


def tensor(owner: nn.Module, name: str, where: str) -> torch.Tensor:
    """owner.<name> as a detached tensor, or MoEInputError naming `where`."""
    value = getattr(owner, name, None)
    if not isinstance(value, torch.Tensor):
        raise MoEInputError(f"{where}: expected a tensor attribute {name!r}, got {type(value).__name__}")
    return value.detach()


def optional_tensor(owner: nn.Module, name: str) -> torch.Tensor | None:
    value = getattr(owner, name, None)
    return value.detach() if isinstance(value, torch.Tensor) else None


def linear_weight(owner: nn.Module, name: str, where: str) -> torch.Tensor:
    """The weight of the bias-free nn.Linear owner.<name> ([out, in])."""
    layer = getattr(owner, name, None)
    if not isinstance(getattr(layer, "weight", None), torch.Tensor):
        raise MoEInputError(f"{where}.{name}: expected a linear layer with a weight, got {type(layer).__name__}")
    if getattr(layer, "bias", None) is not None:
        raise MoEInputError(f"{where}.{name}: has a bias, which moebench's spec does not state for this layer")
    return layer.weight.detach()


def is_silu(act: object) -> bool:
    """Whether `act` (an activation module or function) is SiLU / swish."""
    if isinstance(act, nn.SiLU):
        return True
    name = type(act).__name__.lower()
    return "silu" in name or "swish" in name or getattr(act, "__name__", "") == "silu"


def check_silu(module: nn.Module, where: str) -> None:
    """The module's activation (`act_fn`, or `activation_fn` in Llama-4's MLP) must be SiLU (SwiGLU experts)."""
    act = first_attr([module], ("act_fn", "activation_fn"), object)
    if act is not None and not is_silu(act):
        raise MoEInputError(f"{where}.act_fn: only SiLU-gated (swiglu) experts are supported, got {type(act).__name__}")


# the names of one gated MLP's three projections: Mixtral v4 experts, and every other family's MLPs
MLP_NAMES = (("w1", "w3", "w2"), ("gate_proj", "up_proj", "down_proj"))


def mlp_weights(mlp: nn.Module, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A gated MLP (gate, up, down bias-free nn.Linear layers, SiLU) as (w1 [2N, H] gate rows then up
    rows, w2 [H, N]): one v4 per-expert module, or a shared expert."""
    for gate_name, up_name, down_name in MLP_NAMES:
        if all(hasattr(mlp, n) for n in (gate_name, up_name, down_name)):
            break
    else:
        raise MoEInputError(f"{where}: expected w1/w3/w2 or gate_proj/up_proj/down_proj linear layers")
    check_silu(mlp, where)
    gate, up, down = (linear_weight(mlp, n, where) for n in (gate_name, up_name, down_name))
    return torch.cat([gate, up]), down
