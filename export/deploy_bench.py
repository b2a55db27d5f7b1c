"""The deployment comparison: PyTorch implementations vs ONNX Runtime vs TensorRT, same table.

The deployed targets are registry implementations of kind "deployed" (moebench.impls.onnx_runtime),
so they are measured by moebench.bench's own runner: same inputs per cell, parity against the fp64
reference on the very calls timed, moebench.timing's method, the same long-format row columns.
`moebench report` then shows them next to the PyTorch implementations. Targets that are not
available on the device (no CUDA provider, no TensorRT) are listed with the reason, never faked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moebench import registry
from moebench.spec import MoESpec

DEPLOYED_TARGETS = {
    "cpu": ("ort-cpu:portable", "ort-cpu:ort-fused"),
    "cuda": ("ort-cuda:portable", "ort-cuda:ort-fused", "tensorrt"),
}


@dataclass
class DeployBenchResult:
    rows: list[dict]
    left_out: list[tuple[str, str]]  # (impl, reason)
    path: Path | None


def run_deploy_bench(
    specs: list[MoESpec],
    tokens: list[int],
    device: str,
    *,
    compare: tuple[str, ...] = (),
    targets: tuple[str, ...] | None = None,
    out: str | Path | None = None,
    seed: int | None = None,
    reps: int | None = None,
    quick_ceilings: bool = False,
) -> DeployBenchResult:
    """Measure the deployed targets (+ `compare`, PyTorch implementations, + the baseline) and write a CSV."""
    from moebench.bench import BenchOptions, default_baseline, run_bench, select_impls
    from moebench.ceilings import measure_ceilings
    from moebench.results import default_path, write_rows
    from moebench.spec import dtype_name

    targets = targets if targets is not None else DEPLOYED_TARGETS[device]
    for name in (*targets, *compare):
        registry.get(name)  # unknown names: a clear error before any work
    baseline = default_baseline()
    selection = select_impls([*targets, *compare], device, baseline)
    options = BenchOptions(use_graph=True, reps=reps, seed=seed)
    dtypes = tuple(dict.fromkeys(dtype_name(s.dtype) for s in specs))
    ceilings = measure_ceilings(device, dtypes, quick=quick_ceilings)
    result = run_bench(specs, tokens, selection, device, baseline=baseline, ceilings=ceilings, options=options)
    left_out = list(selection.unavailable) + list(selection.skipped) + list(result.unsupported)
    for other, names in DEPLOYED_TARGETS.items():  # the other device's targets, so the table says why not
        if other != device and targets == DEPLOYED_TARGETS[device]:
            for name in names:
                ok, reason = registry.get(name).available(other)
                left_out.append((name, f"runs with --device {other}" + ("" if ok else f"; here: {reason}")))
    path = None
    if result.rows:
        path = write_rows(Path(out) if out else default_path("deploy", device), result.rows)
    return DeployBenchResult(result.rows, left_out, path)
