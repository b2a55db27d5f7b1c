"""Built-in implementations; importing this package registers them all.

Each module registers with @moebench.registry.register and imports heavy or optional packages
(triton, transformers, vllm, onnxruntime) lazily inside its functions, so listing never fails.
"""

import importlib

_MODULES = (
    "naive_loop",
    "padded_batch",
)

for _name in _MODULES:
    importlib.import_module(f"{__name__}.{_name}")
