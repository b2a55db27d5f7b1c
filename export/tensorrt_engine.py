"""Build and run a TensorRT engine from the portable ONNX graph (TensorRT 10 Python API).

Only this module touches `tensorrt`, imported inside the functions so the rest of moebench
loads without it. Written against the documented TensorRT 10 API (Builder, strongly typed
network, OnnxParser.parse_from_file, optimisation profile over the token axis, memory pool
limit, build_serialized_network; Runtime.deserialize_cuda_engine; IExecutionContext with
set_input_shape / set_tensor_address / execute_async_v3). NOT run in this repository's CI or dev
machines (no TensorRT, no GPU there): tests skip with the reason when `import tensorrt` fails.

The network is STRONGLY_TYPED: every tensor keeps the ONNX graph's type (fp32 routing,
fp16/bf16 GEMMs), so TensorRT does not pick precisions on its own and parity matches ORT's.
T=0: the profile starts at T=1 (TensorRT's empty-tensor support varies by layer), so `run`
answers T=0 with the empty output without launching the engine (the correct result).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from moebench.errors import MoEInputError
from moebench.export.graph_common import INPUT_NAME, OUTPUT_NAME

DEFAULT_WORKSPACE_BYTES = 8 << 30


def tensorrt_missing() -> str | None:
    """None when TensorRT can build and run engines here, else why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"needs TensorRT's Python package (pip install tensorrt; import failed: {exc})"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (torch.cuda.is_available() is False)"
    return None


@dataclass(frozen=True)
class TokenProfile:
    """The optimisation profile over the token axis: engines run any T in [min, max]."""

    min_tokens: int = 1
    opt_tokens: int = 128
    max_tokens: int = 4096

    def __post_init__(self) -> None:
        if not 1 <= self.min_tokens <= self.opt_tokens <= self.max_tokens:
            raise MoEInputError(
                f"profile: expected 1 <= min <= opt <= max tokens, got {self.min_tokens}/{self.opt_tokens}/"
                f"{self.max_tokens}"
            )


def _logger():
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    hidden: int,
    profile: TokenProfile = TokenProfile(),
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> Path:
    """Parse the portable ONNX file, build a strongly typed engine for T in the profile, save it."""
    reason = tensorrt_missing()
    if reason:
        raise MoEInputError(f"format trt: {reason}")
    import tensorrt as trt

    logger = _logger()
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # implied from TensorRT 10 on
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external weights next to the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MoEInputError(f"model: TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(
        INPUT_NAME,
        (profile.min_tokens, hidden),
        (profile.opt_tokens, hidden),
        (profile.max_tokens, hidden),
    )
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MoEInputError(f"model: TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


class TrtMoE:
    """A deserialised engine and one execution context; `run(x, out)` on CUDA torch tensors."""

    def __init__(self, engine_path: str | Path) -> None:
        reason = tensorrt_missing()
        if reason:
            raise MoEInputError(f"tensorrt: {reason}")
        import tensorrt as trt

        self._runtime = trt.Runtime(_logger())
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise MoEInputError(f"engine: TensorRT could not deserialise {engine_path} (built by another version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if INPUT_NAME not in names or OUTPUT_NAME not in names:
            raise MoEInputError(f"engine: expected tensors {INPUT_NAME!r} and {OUTPUT_NAME!r}, got {names}")
        lo, _, hi = self.engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.min_tokens, self.max_tokens, self.hidden = int(lo[0]), int(hi[0]), int(hi[1])

    def run(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x: [T, H] CUDA -> [T, H], enqueued on torch's current stream (asynchronous)."""
        if not x.is_cuda or x.dim() != 2 or x.shape[1] != self.hidden:
            raise MoEInputError(f"x: expected a CUDA tensor [T, {self.hidden}], got {list(x.shape)} on {x.device}")
        x = x.contiguous()
        out = torch.empty_like(x) if out is None else out
        if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device or not out.is_contiguous():
            raise MoEInputError(f"out: expected a contiguous {list(x.shape)} {x.dtype} tensor on {x.device}")
        tokens = x.shape[0]
        if tokens == 0:
            return out
        if not self.min_tokens <= tokens <= self.max_tokens:
            raise MoEInputError(
                f"x: T={tokens} outside the engine's profile [{self.min_tokens}, {self.max_tokens}] (rebuild with "
                "--max-tokens)"
            )
        self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        stream = torch.cuda.current_stream(x.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 returned False")
        return out
