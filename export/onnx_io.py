"""Save and load exported models; weights go to an external-data file above protobuf's 2 GB limit.

A ModelProto cannot be serialised past 2 GiB (protobuf's message limit), and mixtral-8x7b's
expert weights alone are ~2.8 GB in fp16. Above `threshold_bytes` every initializer of at least
1 KiB is written to one `<model>.onnx.data` file next to the model (ONNX external data), which
onnx.load, onnxruntime and TensorRT's parser all read from the model's directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from moebench.errors import MoEInputError

PROTOBUF_LIMIT_BYTES = 2**31 - 1
# initializer bytes above which weights are saved externally (headroom for the graph itself)
DEFAULT_EXTERNAL_THRESHOLD = PROTOBUF_LIMIT_BYTES - (64 << 20)
EXTERNAL_MIN_TENSOR_BYTES = 1024


@dataclass(frozen=True)
class SavedModel:
    path: Path
    external_data: Path | None  # the weights file, when weights were saved externally
    initializer_bytes: int

    @property
    def files(self) -> list[Path]:
        return [self.path] + ([self.external_data] if self.external_data else [])


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Bytes of weight data held inline (raw_data or typed fields) by the model's initializers."""
    total = 0
    for t in model.graph.initializer:
        if t.raw_data:
            total += len(t.raw_data)
        else:
            total += 8 * (len(t.float_data) + len(t.int64_data) + len(t.double_data) + len(t.int32_data))
    return total


def save_model(
    model: onnx.ModelProto, path: str | Path, *, threshold_bytes: int = DEFAULT_EXTERNAL_THRESHOLD
) -> SavedModel:
    """Write `model` to `path`; initializers go to `<name>.data` when they exceed `threshold_bytes`.

    The in-memory model is not modified (external data is written from a copy).
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise MoEInputError(f"out: expected a path ending in .onnx, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    size = initializer_bytes(model)
    data_path = path.with_name(path.name + ".data")
    if size <= threshold_bytes:
        if data_path.exists():
            data_path.unlink()  # a stale weights file from an earlier, larger export
        onnx.save_model(model, str(path))
        return SavedModel(path, None, size)
    if data_path.exists():
        data_path.unlink()  # onnx appends to an existing external-data file
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(
        copy,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_path.name,
        size_threshold=EXTERNAL_MIN_TENSOR_BYTES,
        convert_attribute=False,
    )
    return SavedModel(path, data_path, size)


def load_model(path: str | Path, *, load_weights: bool = True) -> onnx.ModelProto:
    """Load a model saved by save_model (external weights read from the model's directory)."""
    path = Path(path)
    if not path.exists():
        raise MoEInputError(f"model: no such file {str(path)!r}")
    return onnx.load_model(str(path), load_external_data=load_weights)


def uses_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
