"""Run an exported MoE model with ONNX Runtime on torch tensors (CPU or CUDA), no copies.

Inputs and outputs are bound by pointer (IOBinding), so the output lands in the caller's
`out` tensor and bf16 works without a numpy bf16 type. On CUDA, Run blocks the host until the
result is ready: the caller's stream is synchronised before Run (ORT runs on its own stream and
must read finished inputs) and the device after it (so `out` is safe on any torch stream).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from moebench.errors import MoEInputError
from moebench.export.graph_common import INPUT_NAME, ONNX_DTYPES, OUTPUT_NAME

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def provider_missing(device: str) -> str | None:
    """None when onnxruntime can run on `device` ('cpu' / 'cuda'), else why not."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "needs onnxruntime (pip install 'moebench[export]'; onnxruntime-gpu for CUDA)"
    available = ort.get_available_providers()
    if PROVIDERS[device] not in available:
        hint = " (pip install onnxruntime-gpu instead of onnxruntime)" if device == "cuda" else ""
        return f"onnxruntime {ort.__version__} has no {PROVIDERS[device]}{hint}; has {', '.join(available)}"
    if device == "cuda" and not torch.cuda.is_available():
        return "needs a CUDA GPU (torch.cuda.is_available() is False)"
    return None


class OrtMoE:
    """One ONNX Runtime session of an exported MoE model.

    model: a ModelProto, its serialized bytes, or a path (external weights next to it).
    device: 'cpu' or 'cuda'. strict (CUDA only): fail at session creation when any node would
    fall back to the CPU provider, so timings are of the GPU graph alone.
    """

    def __init__(
        self,
        model: onnx.ModelProto | bytes | str | Path,
        device: str = "cpu",
        *,
        device_id: int = 0,
        strict: bool = True,
        intra_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        reason = provider_missing(device)
        if reason:
            raise MoEInputError(f"device: cannot run on {device}: {reason}")
        self.device = device
        self.device_id = device_id
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about harmless CPU-side shape nodes
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        if device == "cuda":
            providers = [(PROVIDERS["cuda"], {"device_id": device_id}), PROVIDERS["cpu"]]
            if strict:
                options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        else:
            providers = [PROVIDERS["cpu"]]
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        if isinstance(source, Path):
            source = str(source)
        self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        inp = self.session.get_inputs()[0]
        out = self.session.get_outputs()[0]
        if inp.name != INPUT_NAME or out.name != OUTPUT_NAME:
            raise MoEInputError(f"model: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got {inp.name!r}")
        self.hidden = int(inp.shape[1])
        self._scratch: dict[torch.dtype, torch.Tensor] = {}

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _pointer(self, t: torch.Tensor) -> int:
        """t's data pointer; a 1-element scratch buffer's for empty tensors (ORT refuses null)."""
        if t.numel():
            return t.data_ptr()
        if t.dtype not in self._scratch:
            self._scratch[t.dtype] = torch.empty(1, dtype=t.dtype, device=t.device)
        return self._scratch[t.dtype].data_ptr()

    def run(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x: [T, H] on this session's device -> [T, H] (written into `out` when given)."""
        if x.dim() != 2 or x.shape[1] != self.hidden:
            raise MoEInputError(f"x: expected shape [T, {self.hidden}], got {list(x.shape)}")
        if x.device.type != self.device:
            raise MoEInputError(f"x: expected a {self.device} tensor for this session, got {x.device}")
        if x.dtype not in ONNX_DTYPES:
            raise MoEInputError(f"x: unsupported dtype {x.dtype}")
        x = x.contiguous()
        if out is None:
            out = torch.empty_like(x)
        elif not out.is_contiguous() or out.shape != x.shape or out.dtype != x.dtype:
            raise MoEInputError(f"out: expected a contiguous {list(x.shape)} {x.dtype} tensor")
        elem = ONNX_DTYPES[x.dtype]
        device_type = "cuda" if self.device == "cuda" else "cpu"
        if self.device == "cuda":
            torch.cuda.current_stream(x.device).synchronize()  # ORT runs on its own stream
        binding = self.session.io_binding()
        binding.bind_input(INPUT_NAME, device_type, self.device_id, elem, list(x.shape), self._pointer(x))
        binding.bind_output(OUTPUT_NAME, device_type, self.device_id, elem, list(out.shape), self._pointer(out))
        self.session.run_with_iobinding(binding)
        if self.device == "cuda":
            torch.cuda.synchronize(x.device)  # ORT's stream is not torch's: make `out` safe to read
        return out
