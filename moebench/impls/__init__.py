"""Built-in implementations; importing this package registers them all.

Each module registers with @moebench.registry.register and imports heavy or optional packages
(triton, transformers, vllm, onnxruntime) lazily inside its functions, so listing never fails.
"""

import importlib
import importlib.util

_MODULES = (
    "naive_loop",
    "padded_batch",
    "grouped_mm",  # peer: torch._grouped_mm pipeline
    "triton_grouped",  # ours: Triton grouped GEMM
    "block_sparse",  # ours: MegaBlocks-style block-sparse
    "hf_experts",  # peer: Hugging Face transformers experts
    "vllm_fused",  # peer: vLLM fused_moe
    "onnx_runtime",  # deployed: exported ONNX run by ONNX Runtime
)

for _name in _MODULES:
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}")
