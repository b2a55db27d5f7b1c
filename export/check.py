"""Checks on exported files: onnx.checker, and a static TensorRT-compatibility check.

The TensorRT check needs no TensorRT: it walks the graph against the parser's op table
(trt_ops.py) and the portable contract, and lists every problem it finds:
  * ops TensorRT's ONNX parser does not implement, ops outside the default domain (contrib ops);
  * ops with data-dependent output shapes (NonZero, Unique, ...) and any graph output whose
    inferred shape does not follow from the input shapes;
  * ScatterND / ScatterElements with a reduction;
  * TopK not sorted, K not an initializer, K >= 3840; Reduce*/Squeeze/Unsqueeze axes not constant;
  * element types TensorRT cannot hold (DOUBLE is only cast down, with clamping) or that the op's
    row does not list; opsets outside the parser's range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from moebench.errors import MoEInputError
from moebench.export import trt_ops


class TrtCompatibilityError(MoEInputError):
    """The graph uses something TensorRT's ONNX parser rejects (the message lists what)."""


@dataclass(frozen=True)
class TrtIssue:
    node: str
    op: str
    problem: str

    def __str__(self) -> str:
        return f"{self.op} ({self.node}): {self.problem}"


def _as_model(model_or_path: onnx.ModelProto | str | Path, *, load_weights: bool) -> onnx.ModelProto:
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    return onnx.load_model(str(model_or_path), load_external_data=load_weights)


def check_onnx(model_or_path: onnx.ModelProto | str | Path, *, full_check: bool = True) -> str:
    """Run onnx.checker (with strict shape inference when full_check). Raises onnx's error.

    Models from a path are checked from the path, so models over 2 GB (external data) work.
    If the full check fails on a graph with ops outside the default domain (com.microsoft.MoE,
    which onnx's shape inference may not know), the structural check is run and said so.
    Returns what was checked.
    """
    model = _as_model(model_or_path, load_weights=False)
    custom = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    target = str(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    where = f" (ops from {', '.join(custom)} included)" if custom else ""
    if full_check:
        try:
            onnx.checker.check_model(target, full_check=True)
            return f"onnx.checker full_check (strict shape inference) passed{where}"
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            if not custom:
                raise
            reason = str(exc).splitlines()[0][:120]
    onnx.checker.check_model(target, full_check=False)
    why = f" (full check not possible with {', '.join(custom)} ops: {reason})" if full_check else ""
    return f"onnx.checker structural check passed{why}"


def trt_issues(model_or_path: onnx.ModelProto | str | Path) -> list[TrtIssue]:
    """Every reason TensorRT's ONNX parser (trt_ops.TRT_VERSION) or the portable contract rejects the graph."""
    model = _as_model(model_or_path, load_weights=False)
    graph = model.graph
    issues: list[TrtIssue] = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            lo, hi = trt_ops.OPSET_RANGE
            if not lo <= imp.version <= hi:
                issues.append(TrtIssue("model", "opset", f"opset {imp.version} outside TensorRT's {lo}..{hi}"))
    constants = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            constants.setdefault(n.output[0], _constant_value(n))
    types = _inferred_types(_structure_only(model))

    for n in graph.node:
        name = n.name or (n.output[0] if n.output else "?")

        def flag(problem: str, node_name: str = name, op: str = n.op_type) -> None:
            issues.append(TrtIssue(node_name, op, problem))

        if n.domain not in ("", "ai.onnx"):
            flag(f"custom domain {n.domain!r}: TensorRT's ONNX parser implements the default domain only")
            continue
        if n.op_type in trt_ops.UNSUPPORTED or n.op_type not in trt_ops.SUPPORTED:
            flag(f"not supported by TensorRT {trt_ops.TRT_VERSION}'s ONNX parser")
            continue
        if n.op_type in trt_ops.DATA_DEPENDENT_SHAPE_OPS:
            flag("output shape depends on the data (not a static shape: forbidden in portable graphs)")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type in trt_ops.SCATTER_OPS:
            reduction = attrs.get("reduction", b"none")
            reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
            if reduction != "none":
                flag(f"reduction={reduction!r}: TensorRT supports only reduction='none' (and the order is unspecified)")
        if n.op_type == "TopK":
            if attrs.get("sorted", 1) != 1:
                flag("sorted must be 1")
            k_name = n.input[1] if len(n.input) > 1 else ""
            if constants.get(k_name) is None:
                flag("K must be an initializer")
            else:
                k_value = int(onnx.numpy_helper.to_array(constants[k_name]).reshape(-1)[0])
                if k_value >= trt_ops.TOPK_MAX_K:
                    flag(f"K={k_value} must be < {trt_ops.TOPK_MAX_K}")
        takes_axes = n.op_type.startswith("Reduce") or n.op_type in ("Squeeze", "Unsqueeze")
        if takes_axes and len(n.input) > 1 and n.input[1] and n.input[1] not in constants:
            flag("axes must be an initializer / constant")
        # element types: the op's data input against its row, and DOUBLE anywhere
        data_index = 1 if n.op_type == "Where" else 0
        if len(n.input) > data_index and n.input[data_index] in types:
            elem = types[n.input[data_index]]
            allowed = trt_ops.SUPPORTED[n.op_type].types
            if elem == "DOUBLE":
                flag("DOUBLE input: TensorRT casts DOUBLE down to FLOAT with clamping")
            elif elem not in allowed:
                flag(f"input element type {elem} not in TensorRT's {'/'.join(allowed)} for {n.op_type}")
        if n.op_type == "Cast":
            to = TensorProto.DataType.Name(attrs.get("to", 0))
            if to not in trt_ops.NETWORK_DTYPES:
                flag(f"casts to {to}: not a TensorRT network type")

    for vi in list(graph.input) + list(graph.output):
        elem = TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
        if elem not in trt_ops.NETWORK_DTYPES:
            issues.append(TrtIssue(vi.name, "graph I/O", f"element type {elem} is not a TensorRT network type"))
    issues += _output_shape_issues(model)
    return issues


def check_trt_compatible(model_or_path: onnx.ModelProto | str | Path) -> None:
    """Raise TrtCompatibilityError listing every issue (trt_issues), else return None."""
    issues = trt_issues(model_or_path)
    if issues:
        lines = "\n  ".join(str(i) for i in issues)
        raise TrtCompatibilityError(
            f"model: {len(issues)} TensorRT-compatibility issue(s) ({trt_ops.TRT_SOURCE}):\n  {lines}"
        )


def _constant_value(node: onnx.NodeProto) -> TensorProto | None:
    for a in node.attribute:
        if a.name == "value":
            return a.t
    return None


def _inferred_types(model: onnx.ModelProto) -> dict[str, str]:
    """value name -> element type name, from onnx shape inference (unknown values left out)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # inference is a help here, not a requirement
        inferred = model
    g = inferred.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
    for t in g.initializer:
        types[t.name] = TensorProto.DataType.Name(t.data_type)
    return types


def _output_shape_issues(model: onnx.ModelProto) -> list[TrtIssue]:
    """Graph outputs whose inferred shape is not determined by the input shapes.

    The declared output shapes are removed first, so what is checked is what the ops produce.
    """
    probe = _structure_only(model)
    for out in probe.graph.output:
        out.type.tensor_type.ClearField("shape")
    del probe.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=False, strict_mode=False)
    except Exception as exc:
        return [TrtIssue("graph", "shape inference", f"onnx shape inference failed: {exc}")]
    input_symbols = {d.dim_param for vi in model.graph.input for d in vi.type.tensor_type.shape.dim if d.dim_param}
    issues = []
    for out in inferred.graph.output:
        tt = out.type.tensor_type
        if not tt.HasField("shape"):
            issues.append(TrtIssue(out.name, "graph output", "rank unknown after shape inference"))
            continue
        for axis, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") or (d.dim_param and d.dim_param in input_symbols):
                continue
            issues.append(
                TrtIssue(out.name, "graph output", f"axis {axis} is data-dependent or unknown ({d.dim_param or '?'})")
            )
    return issues


def _structure_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with the graph and small constants but no weight bytes (cheap to copy and infer).

    Large initializers keep their name, type and dims (all shape inference needs from them).
    """
    probe = onnx.ModelProto()
    probe.ir_version = model.ir_version
    probe.opset_import.extend(model.opset_import)
    g = probe.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    for t in model.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL or len(t.raw_data) > 4096:
            g.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims)
        else:
            g.initializer.append(t)
    return probe
