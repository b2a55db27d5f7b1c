"""The CPU deployment comparison of quantised experts: the ort-fused graph of the unquantised layer (fp32,
com.microsoft.MoE) beside com.microsoft.QMoE graphs of the same weights quantised (INT4 / INT8), all run by
ONNX Runtime's CPU provider. Per (graph, T): median time (moebench.timing.time_cpu, p20/p80 spread), the
serialised model's size, and the output's rel. L2 error against the fp64 reference of the unquantised layer
(what quantisation costs) and against the dequantised layer's (what the kernel adds: int8 runs W8A8 here).
The sessions run with torch's thread count and are timed with the benchmark's CPU clock (moebench.timing.
cpu_clock: process CPU time with one thread), as the deployed rows of `moebench export --bench` are.
`moebench export --bench --quant int4-g128,int8-g128` runs it, writes one CSV row per cell and `markdown`'s
table beside it (generated from the rows: no figure is typed by hand).
"""

from __future__ import annotations

import torch

from moebench.errors import MoEInputError
from moebench.spec import MoESpec, dtype_name


def run_qmoe_bench(spec: MoESpec, formats: list[str], tokens: list[int], *, seed: int = 0, reps: int = 10):
    """Rows (dicts) for the unquantised ort-fused graph and each QMoE format, at every T."""
    from moebench.export.exporter import build_model
    from moebench.export.ort_runner import OrtMoE
    from moebench.parity import compare
    from moebench.presets import spec_label
    from moebench.reference import reference_moe, reference_unquantized
    from moebench.timing import cpu_clock, time_cpu
    from moebench.weights import quantized, random_inputs, random_weights

    if spec.quant is not None:
        raise MoEInputError(f"spec: expected the unquantised layer (the formats come from --quant), got {spec.quant}")
    plain = random_weights(spec, seed=seed)
    threads, clock = torch.get_num_threads(), cpu_clock()
    rows = []
    for fmt in [None, *formats]:
        weights = plain if fmt is None else quantized(plain, fmt)
        model = build_model(weights, "ort-fused").SerializeToString()
        runner = OrtMoE(model, "cpu", intra_op_threads=threads)
        for t in tokens:
            x = random_inputs(spec, t, seed=seed + 1 + t)
            y = runner.run(x)
            timing = time_cpu(lambda x=x, runner=runner: runner.run(x), reps=reps, clock=clock)
            dequantised = compare(y, reference_moe(x, weights), spec.dtype).rel_l2
            rows.append(
                {
                    "graph": "com.microsoft.MoE" if fmt is None else "com.microsoft.QMoE",
                    "quant": fmt or dtype_name(spec.dtype),
                    "preset": spec_label(spec),
                    "dtype": dtype_name(spec.dtype),
                    "T": t,
                    "median_ms": timing.median_ms,
                    "p20_ms": timing.p20_ms,
                    "p80_ms": timing.p80_ms,
                    "runs": timing.runs,
                    "method": timing.method,
                    "threads": threads,
                    "model_bytes": len(model),
                    "rel_l2_vs_unquantized": compare(y, reference_unquantized(x, weights), spec.dtype).rel_l2,
                    "rel_l2_vs_dequantized": dequantised,
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows (with moebench.results.environment's columns) as a page: how they were measured, then a table."""
    first = rows[0]
    lines = [
        "# QMoE beside the unquantised ort-fused graph, ONNX Runtime CPU provider",
        "",
        f"- Command: `{first['command']}`",
        f"- Date: {first['date']}. Machine: {first['device_name']}; {first['threads']} thread(s), {first['method']}.",
        f"- Versions: Python {first['python']}, torch {first['torch']}, onnxruntime {first.get('onnxruntime', '?')}, "
        f"triton {first['triton']}.",
        f"- Layer: {first['preset']}, {first['dtype']} activations, random weights. Generated from the CSV beside "
        "this file (one row per cell).",
        "",
        "| graph | weights | T | median ms (p20-p80) | model bytes | rel. L2 vs unquantised | rel. L2 vs dequantised |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['graph']} | {r['quant']} | {r['T']} | {r['median_ms']:.4g} ({r['p20_ms']:.4g}-{r['p80_ms']:.4g}) | "
            f"{r['model_bytes']:,} | {r['rel_l2_vs_unquantized']:.2g} | {r['rel_l2_vs_dequantized']:.2g} |"
        )
    return "\n".join(lines) + "\n"
