"""moebench: pick, tune, verify and ship the MoE layer of a model on a given GPU."""

from moebench import hf
from moebench.errors import MoEInputError, UnknownImplementationError
from moebench.presets import PRESET_NAMES, REAL_PRESETS, TINY_PRESETS, get_preset
from moebench.reference import reference_moe
from moebench.registry import ImplInfo, get, names, register
from moebench.spec import MoESpec, RouterSpec
from moebench.weights import MoEWeights, random_inputs, random_weights

__version__ = "0.1.0"

__all__ = [
    "ImplInfo",
    "MoEInputError",
    "MoESpec",
    "MoEWeights",
    "PRESET_NAMES",
    "REAL_PRESETS",
    "RouterSpec",
    "TINY_PRESETS",
    "UnknownImplementationError",
    "get",
    "hf",
    "get_preset",
    "names",
    "random_inputs",
    "random_weights",
    "reference_moe",
    "register",
]
