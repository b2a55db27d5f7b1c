"""Deployed implementations: the layer exported to ONNX and run by ONNX Runtime or TensorRT.

  ort-cpu:portable    portable graph (standard ops, all experts dense) on ORT's CPU provider
  ort-cpu:ort-fused   router MatMul + com.microsoft.MoE on ORT's CPU provider
  ort-cuda:portable   portable graph on ORT's CUDA provider (onnxruntime-gpu)
  ort-cuda:ort-fused  com.microsoft.MoE on ORT's CUDA provider
  tensorrt            TensorRT engine built from the portable graph

The first call for a MoEWeights object exports it and builds the session / engine (cached on
the weights, so benchmarks time runs, not exports); later calls bind x and `out` by pointer.
Weights above protobuf's 2 GB limit are exported to a temporary directory with external data.
ort-fused raises MoEInputError for specs the contrib op cannot express exactly (exact GELU; weight on
the input with k > 1). None of these is graph-safe: ONNX Runtime's Run blocks
the host, and the TensorRT runner is timed eagerly too.
onnx / onnxruntime / tensorrt are imported on first use, so listing never needs them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from moebench.export.features import EXPORTED_FEATURES, NOT_EXPORTED_NOTE
from moebench.registry import register
from moebench.weights import MoEWeights

ORT_CPU_DTYPES = (torch.float32, torch.float16)  # ORT's CPU MatMul has no bf16 kernel (NOT_IMPLEMENTED)
GPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TRT_MAX_TOKENS = 4096  # engine profile max; grown to the next power of two for larger T


def _provider_check(device_kind: str):
    def check(device: str) -> str | None:
        from moebench.export.ort_runner import provider_missing

        return provider_missing(device_kind)

    return check


def _trt_check(device: str) -> str | None:
    from moebench.export.tensorrt_engine import tensorrt_missing

    return tensorrt_missing()


class _Exported:
    """An exported model kept alive with the temporary directory its files may live in."""

    def __init__(self, weights: MoEWeights, flavor: str, *, to_file: bool = False) -> None:
        from moebench.export.exporter import build_model
        from moebench.export.onnx_io import DEFAULT_EXTERNAL_THRESHOLD, initializer_bytes, save_model

        self.model = build_model(weights, flavor)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.path: Path | None = None
        if to_file or initializer_bytes(self.model) > DEFAULT_EXTERNAL_THRESHOLD:
            self._tmp = tempfile.TemporaryDirectory(prefix="moebench-export-")
            self.path = save_model(self.model, Path(self._tmp.name) / "moe.onnx").path
            self.model = None  # the file holds it now

    @property
    def source(self):
        return self.path if self.path is not None else self.model


def _ort_runner(weights: MoEWeights, device: str, flavor: str):
    from moebench.export.ort_runner import OrtMoE

    exported = _Exported(weights, flavor)
    # on the CPU, torch's thread count: comparisons with the torch implementations are like for like,
    # and the row's `threads` column holds for the session too
    threads = torch.get_num_threads() if device == "cpu" else 0
    runner = OrtMoE(exported.source, device, device_id=weights.device.index or 0, intra_op_threads=threads)
    runner.exported = exported  # keep the temporary files alive as long as the session
    return runner


def _make_ort(device: str, flavor: str):
    key = f"ort-{device}:{flavor}"

    def run(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None) -> torch.Tensor:
        if flavor == "portable":
            _check_dense_fits(x, weights)
        runner = weights.derived(key, lambda w: _ort_runner(w, device, flavor))
        return runner.run(x, out)

    run.__name__ = key.replace("-", "_").replace(":", "_")
    return run


def _fused_spec_reason(spec) -> str | None:
    """Why com.microsoft.MoE cannot compute `spec` exactly (None when it can)."""
    from moebench.export.ort_fused import unsupported_reason

    return unsupported_reason(spec)


def _qmoe_reason(spec) -> str | None:
    """Why ort-cpu:ort-fused (com.microsoft.QMoE) cannot compute a quantised `spec` as stated (None when it can).
    int8 is exported (moebench export) but not registered: the CPU kernel quantises the activations to int8
    too (W8A8), a different layer than the spec's weight-only int8."""
    from moebench.export.ort_qmoe import qmoe_unsupported
    from moebench.quant.formats import get_format

    reason = qmoe_unsupported(spec)
    if reason is None and get_format(spec.quant).bits == 8:
        reason = (
            f"quant: {spec.quant}: QMoE's CPU kernel runs int8 as W8A8 (activations quantised too), not weight-only"
        )
    return reason


_DESCRIPTIONS = {
    "portable": "exported portable ONNX (standard ops; all E experts dense = E/k x FLOPs) on ONNX Runtime",
    "ort-fused": "exported ONNX with ONNX Runtime's com.microsoft.MoE contrib op",
}

for _device in ("cpu", "cuda"):
    for _flavor in ("portable", "ort-fused"):
        register(
            f"ort-{_device}:{_flavor}",
            kind="deployed",
            description=f"{_DESCRIPTIONS[_flavor]}, {_device.upper()} provider",
            requires=("onnx", "onnxruntime"),
            dtypes=ORT_CPU_DTYPES if _device == "cpu" else GPU_DTYPES,
            devices=(_device,),
            graph_safe=False,
            extra_check=_provider_check(_device),
            # specs the contrib op cannot express exactly: verify / bench skip them with this reason
            spec_check=_fused_spec_reason if _flavor == "ort-fused" else None,
            features=EXPORTED_FEATURES[_flavor],
            features_note=NOT_EXPORTED_NOTE,
            takes_routing=False,
            quant=_qmoe_reason if (_device, _flavor) == ("cpu", "ort-fused") else None,
        )(_make_ort(_device, _flavor))


def _check_dense_fits(x: torch.Tensor, weights: MoEWeights) -> None:
    """On CUDA, refuse (clearly) a T whose dense all-experts intermediates cannot fit in free memory."""
    if x.device.type != "cuda":
        return
    from moebench.errors import MoEInputError
    from moebench.export.portable import dense_intermediate_bytes

    need = dense_intermediate_bytes(weights.spec, x.shape[0])
    free = torch.cuda.mem_get_info(x.device)[0]
    if need > 0.8 * free:
        raise MoEInputError(
            f"x: T={x.shape[0]} needs ~{need / 2**30:.1f} GiB of intermediates in the portable (all-experts dense) "
            f"graph, {free / 2**30:.1f} GiB free; use fewer tokens or the ort-fused flavour"
        )


class _TrtState:
    """The engine for one MoEWeights, rebuilt with a larger profile when T outgrows it."""

    def __init__(self, weights: MoEWeights) -> None:
        self.weights = weights
        self.runner = None
        self.exported = None

    def runner_for(self, num_tokens: int):
        from moebench.export.tensorrt_engine import TokenProfile, TrtMoE, build_engine

        if self.runner is None or num_tokens > self.runner.max_tokens:
            max_tokens = max(TRT_MAX_TOKENS, 1 << max(num_tokens - 1, 0).bit_length())
            if self.exported is None:
                self.exported = _Exported(self.weights, "portable", to_file=True)  # the parser reads files
            engine_path = self.exported.path.with_suffix(f".{max_tokens}.engine")
            profile = TokenProfile(1, min(128, max_tokens), max_tokens)
            build_engine(self.exported.path, engine_path, hidden=self.weights.spec.hidden, profile=profile)
            self.runner = TrtMoE(engine_path)
        return self.runner


@register(
    "tensorrt",
    kind="deployed",
    description="TensorRT engine (strongly typed) built from the portable ONNX graph",
    requires=("onnx", "tensorrt"),
    dtypes=GPU_DTYPES,
    devices=("cuda",),
    graph_safe=False,
    extra_check=_trt_check,
    features=EXPORTED_FEATURES["portable"],
    features_note=NOT_EXPORTED_NOTE,
    takes_routing=False,
)
def tensorrt_engine(x: torch.Tensor, weights: MoEWeights, *, out=None, config=None) -> torch.Tensor:
    _check_dense_fits(x, weights)
    state = weights.derived("tensorrt", _TrtState)
    return state.runner_for(x.shape[0]).run(x, out)
