"""Pieces every ONNX lowering of the MoE layer shares: dtype maps, initializers, metadata.

Weights become initializers through their raw bytes (torch -> bytes), so bf16 needs no numpy
bf16 type and values are bit-exact copies of the canonical weights.
"""

from __future__ import annotations

import onnx
import torch
from onnx import TensorProto, helper

from moebench.errors import MoEInputError
from moebench.export.features import unexported_features
from moebench.presets import spec_label
from moebench.spec import MoESpec, dtype_name, spec_from_dict

MIN_OPSET = 18  # Split(num_outputs=...) and ReduceSum(axes as input) need 18
TOKEN_AXIS = "num_tokens"  # the one dynamic dimension of every exported graph
INPUT_NAME = "x"
OUTPUT_NAME = "y"

ONNX_DTYPES: dict[torch.dtype, int] = {
    torch.float32: TensorProto.FLOAT,
    torch.float16: TensorProto.FLOAT16,
    torch.bfloat16: TensorProto.BFLOAT16,
    torch.float64: TensorProto.DOUBLE,
    torch.int64: TensorProto.INT64,
    torch.int32: TensorProto.INT32,
    torch.bool: TensorProto.BOOL,
    torch.uint8: TensorProto.UINT8,
}
TORCH_DTYPES: dict[int, torch.dtype] = {v: k for k, v in ONNX_DTYPES.items()}
EXPORT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def onnx_dtype(dtype: torch.dtype) -> int:
    if dtype not in ONNX_DTYPES:
        raise MoEInputError(f"dtype: no ONNX element type for {dtype}")
    return ONNX_DTYPES[dtype]


def check_export_args(spec: MoESpec, opset: int, flavor: str) -> None:
    """The exporters' shared argument checks (spec options the `flavor` lowering does not express included)."""
    reason = unexported_features(spec, flavor)
    if reason:
        raise MoEInputError(f"{reason} (spec: {spec.describe()})")
    if spec.dtype not in EXPORT_DTYPES:
        names = ", ".join(dtype_name(d) for d in EXPORT_DTYPES)
        raise MoEInputError(f"dtype: export supports {names}, got {dtype_name(spec.dtype)}")
    if not isinstance(opset, int) or opset < MIN_OPSET or opset > onnx.defs.onnx_opset_version():
        raise MoEInputError(
            f"opset: expected an int in [{MIN_OPSET}, {onnx.defs.onnx_opset_version()}] "
            f"(onnx {onnx.__version__}), got {opset!r}"
        )


def initializer(name: str, tensor: torch.Tensor) -> TensorProto:
    """A TensorProto holding a bit-exact copy of `tensor` (any dtype in ONNX_DTYPES, incl. bf16)."""
    t = tensor.detach().contiguous().cpu()
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return helper.make_tensor(name, onnx_dtype(t.dtype), list(t.shape), vals=raw, raw=True)


def int64_const(name: str, values: list[int]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def scalar_const(name: str, value: float, dtype: torch.dtype) -> TensorProto:
    """A rank-0 constant in `dtype` (for elementwise maths in the compute dtype)."""
    return initializer(name, torch.tensor(value, dtype=dtype))


def used_initializers(inits: list[TensorProto], nodes: list[onnx.NodeProto]) -> list[TensorProto]:
    """The initializers some node reads (a lowering may add constants one spec's graph does not use)."""
    read = {name for n in nodes for name in n.input}
    return [t for t in inits if t.name in read]


def token_tensor_info(name: str, dtype: torch.dtype, width: int) -> onnx.ValueInfoProto:
    """[num_tokens, width] value info with a symbolic token axis."""
    return helper.make_tensor_value_info(name, onnx_dtype(dtype), [TOKEN_AXIS, width])


def spec_metadata(spec: MoESpec, *, flavor: str, impl: str, extra: dict | None = None) -> dict[str, str]:
    """metadata_props: what the graph computes, for whom, and how to rebuild the spec."""
    meta = {
        "moebench.flavor": flavor,
        "moebench.impl": impl,
        "moebench.preset": spec_label(spec),
        "moebench.spec": spec.to_json(),
        "moebench.describe": spec.describe(),
        "moebench.input": f"{INPUT_NAME}: [{TOKEN_AXIS}, {spec.hidden}] {dtype_name(spec.dtype)}",
        "moebench.output": f"{OUTPUT_NAME}: [{TOKEN_AXIS}, {spec.hidden}] {dtype_name(spec.dtype)}",
    }
    for key, value in (extra or {}).items():
        meta[f"moebench.{key}"] = str(value)
    return meta


def spec_from_metadata(model: onnx.ModelProto) -> MoESpec:
    """The MoESpec an exported model records (inverse of spec_metadata)."""
    props = {p.key: p.value for p in model.metadata_props}
    if "moebench.spec" not in props:
        raise MoEInputError("model: no 'moebench.spec' in metadata_props (not exported by moebench)")
    return spec_from_dict(props["moebench.spec"])


def metadata_of(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def make_model(
    graph: onnx.GraphProto, *, opset: int, metadata: dict[str, str], extra_domains: dict[str, int] | None = None
) -> onnx.ModelProto:
    imports = [helper.make_opsetid("", opset)]
    imports += [helper.make_opsetid(domain, version) for domain, version in (extra_domains or {}).items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name="moebench", producer_version=_version())
    # the oldest IR version that carries these opsets: newer onnx packages default to an IR version
    # that older onnxruntime / TensorRT parsers refuse
    model.ir_version = helper.find_min_ir_version_for(imports, ignore_unknown=True)
    helper.set_model_props(model, metadata)
    return model


def _version() -> str:
    from moebench import __version__

    return __version__
