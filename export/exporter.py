"""One entry point for exporting: weights -> checked .onnx on disk (-> TensorRT .engine).

Every file written is checked: onnx.checker (full check where onnx knows all ops), and for the
portable flavour the static TensorRT-compatibility check, which must pass (it is the flavour's
contract). ort-fused graphs are ONNX Runtime only; their TensorRT issues are reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

from moebench.errors import MoEInputError
from moebench.export import check, onnx_io
from moebench.export.graph_common import MIN_OPSET
from moebench.weights import MoEWeights

FLAVORS = ("portable", "ort-fused")
FORMATS = ("onnx", "trt")


def build_model(weights: MoEWeights, flavor: str, *, impl: str = "naive_loop", opset: int = MIN_OPSET):
    """The ModelProto of `flavor` for these weights (in memory; nothing written)."""
    if flavor == "portable":
        from moebench.export.portable import build_portable

        return build_portable(weights, impl=impl, opset=opset)
    if flavor == "ort-fused":
        from moebench.export.ort_fused import build_ort_fused

        return build_ort_fused(weights, impl=impl, opset=opset)
    raise MoEInputError(f"flavor: expected one of {FLAVORS}, got {flavor!r}")


@dataclass
class ExportReport:
    """What was written and what the checks said."""

    onnx_path: Path
    external_data: Path | None
    initializer_bytes: int
    flavor: str
    checks: list[str] = field(default_factory=list)
    trt_issues: list[check.TrtIssue] = field(default_factory=list)
    engine_path: Path | None = None

    def lines(self) -> list[str]:
        size = self.initializer_bytes / 2**20
        out = [f"wrote {self.onnx_path} ({self.flavor}, weights {size:.2f} MiB)"]
        if self.external_data:
            out.append(f"  weights as external data: {self.external_data}")
        out += [f"  {c}" for c in self.checks]
        if self.trt_issues:
            out.append(f"  TensorRT: not parsable ({len(self.trt_issues)} issue(s)):")
            out += [f"    {i}" for i in self.trt_issues]
        if self.engine_path:
            out.append(f"  TensorRT engine: {self.engine_path}")
        return out


def export_onnx(
    weights: MoEWeights,
    out: str | Path,
    *,
    flavor: str = "portable",
    impl: str = "naive_loop",
    opset: int = MIN_OPSET,
    external_threshold: int = onnx_io.DEFAULT_EXTERNAL_THRESHOLD,
) -> ExportReport:
    """Build, save (external data above the threshold) and check one ONNX file."""
    model = build_model(weights, flavor, impl=impl, opset=opset)
    saved = onnx_io.save_model(model, out, threshold_bytes=external_threshold)
    del model
    report = ExportReport(saved.path, saved.external_data, saved.initializer_bytes, flavor)
    report.checks.append(check.check_onnx(saved.path))
    issues = check.trt_issues(saved.path)
    if flavor == "portable":
        if issues:
            check.check_trt_compatible(saved.path)  # raises with the full list
        report.checks.append(
            f"static TensorRT-compatibility check passed ({check.trt_ops.TRT_SOURCE}, no data-dependent shapes)"
        )
    else:
        report.trt_issues = issues
    return report


def export_engine(
    weights: MoEWeights,
    out: str | Path,
    *,
    impl: str = "naive_loop",
    opset: int = MIN_OPSET,
    min_tokens: int = 1,
    opt_tokens: int = 128,
    max_tokens: int = 4096,
    workspace_bytes: int | None = None,
) -> ExportReport:
    """Portable ONNX next to `out` (<name>.onnx), then a TensorRT engine at `out` (.engine)."""
    from moebench.export.tensorrt_engine import DEFAULT_WORKSPACE_BYTES, TokenProfile, build_engine

    out = Path(out)
    if out.suffix != ".engine":
        raise MoEInputError(f"out: expected a path ending in .engine for --format trt, got {str(out)!r}")
    profile = TokenProfile(min_tokens, opt_tokens, max_tokens)
    report = export_onnx(weights, out.with_suffix(".onnx"), flavor="portable", impl=impl, opset=opset)
    report.engine_path = build_engine(
        report.onnx_path,
        out,
        hidden=weights.spec.hidden,
        profile=profile,
        workspace_bytes=workspace_bytes or DEFAULT_WORKSPACE_BYTES,
    )
    return report


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an exported file (weights not loaded)."""
    model = onnx.load_model(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
