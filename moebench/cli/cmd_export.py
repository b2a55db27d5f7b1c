"""`moebench export`: the layer as ONNX (portable or ONNX Runtime fused) or a TensorRT engine,
checked and run once for parity; with --bench, the deployment comparison (a CSV under
./moebench-results/ unless --out).

  moebench export --preset tiny --format onnx --flavor portable --out /tmp/x.onnx
  moebench export --preset tiny --flavor ort-fused --dtype fp16 --out /tmp/x_fused.onnx
  moebench export --preset mixtral-8x7b --dtype fp16 --format trt   (a CUDA GPU and TensorRT)
  moebench export --bench --preset small-8x2 --tokens 1,16,128 --dtype fp32
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tabulate import tabulate

from moebench import registry
from moebench.cli.common import (
    add_problem_args,
    csv,
    impl_csv,
    nonneg_int,
    positive_int,
    positive_int_csv,
    prepare_device,
    prepare_device_arg,
    resolve_specs,
)
from moebench.errors import MoEInputError
from moebench.presets import spec_label
from moebench.results import results_dir
from moebench.spec import dtype_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export to ONNX / TensorRT, check, run parity; --bench: deployment comparison",
        description=__doc__,
    )
    add_problem_args(p, default_presets="tiny (--bench: small-8x2; comma-separated)", one=True)
    p.add_argument("--format", choices=("onnx", "trt"), default="onnx", help="onnx file or TensorRT engine")
    p.add_argument(
        "--flavor",
        choices=("portable", "ort-fused"),
        default="portable",
        help="portable: standard ops, TensorRT-parsable; ort-fused: ONNX Runtime's com.microsoft.MoE",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output path (.onnx, or .engine for --format trt; --bench: the CSV); default: ./moebench-results/",
    )
    p.add_argument("--opset", type=opset, default=18, help="ONNX opset (>= 18; default 18)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random canonical weights exported (default 0)")
    p.add_argument(
        "--external-threshold",
        type=nonneg_int,
        default=None,
        help="weight bytes above which weights go to an external-data file (default: protobuf's 2 GB limit)",
    )
    p.add_argument("--no-parity", action="store_true", help="skip the ONNX Runtime parity run after exporting")
    p.add_argument("--min-tokens", type=positive_int, default=1, help="TensorRT profile: smallest T (default 1)")
    p.add_argument("--opt-tokens", type=positive_int, default=128, help="TensorRT profile: T tuned for (default 128)")
    p.add_argument("--max-tokens", type=positive_int, default=4096, help="TensorRT profile: largest T (default 4096)")
    p.add_argument("--bench", action="store_true", help="deployment comparison: time ORT / TensorRT vs PyTorch impls")
    p.add_argument(
        "--tokens", type=positive_int_csv, default=None, help="--bench: comma-separated token counts (default 1,16,128)"
    )
    p.add_argument(
        "--compare",
        type=impl_csv,
        default=None,
        help="--bench: comma-separated PyTorch implementations to include (the baseline always is)",
    )
    p.add_argument("--reps", type=positive_int, default=None, help="--bench: timed runs per measurement")
    p.add_argument(
        "--quant",
        type=csv,
        default=None,
        help="--bench: QMoE formats (e.g. int4-g128,int8-g128) timed beside the fp32 ort-fused graph on the CPU",
    )
    p.set_defaults(handler=run)


def opset(text: str) -> int:
    value = positive_int(text)
    if value < 18:
        raise argparse.ArgumentTypeError(f"expected an ONNX opset >= 18, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.bench:
        return _run_bench(args)
    return _run_export(args)


def _default_out(spec, flavor: str, fmt: str) -> Path:
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec_label(spec))
    suffix = ".engine" if fmt == "trt" else ".onnx"
    return results_dir() / f"moe-{label}-{dtype_name(spec.dtype)}-{flavor if fmt == 'onnx' else 'trt'}{suffix}"


def _run_export(args: argparse.Namespace) -> int:
    from moebench.export.exporter import export_engine, export_onnx
    from moebench.export.onnx_io import DEFAULT_EXTERNAL_THRESHOLD
    from moebench.weights import random_weights

    specs = resolve_specs(args, default_presets=("tiny",), default_dtypes=("fp32",))
    if len(specs) != 1:
        raise MoEInputError(f"--preset/--shape/--dtype: export writes one file: name one problem, got {len(specs)}")
    spec = specs[0]
    if args.impl and len(args.impl) > 1:
        raise MoEInputError(f"--impl: name one implementation the exported layer stands for, got {args.impl}")
    impl = args.impl[0] if args.impl else _baseline()
    if args.format == "trt" and args.flavor != "portable":
        raise MoEInputError("--flavor: TensorRT engines are built from the portable graph (ort-fused is ORT-only)")
    import torch

    if args.format == "trt" and (args.device == "cpu" or not torch.cuda.is_available()):
        given = "--device cpu given" if args.device == "cpu" else "this machine has no CUDA GPU"
        raise MoEInputError(f"--format trt: TensorRT engines build and run on a CUDA GPU only ({given})")
    if args.format == "trt":
        prepare_device("cuda")
    if args.min_tokens > args.opt_tokens or args.opt_tokens > args.max_tokens:
        raise MoEInputError(
            f"--min-tokens/--opt-tokens/--max-tokens: expected min <= opt <= max, got "
            f"{args.min_tokens}, {args.opt_tokens}, {args.max_tokens}"
        )
    out = Path(args.out) if args.out else _default_out(spec, args.flavor, args.format)
    weights = random_weights(spec, device="cpu", seed=args.seed)
    label = f"{spec_label(spec)} ({spec.describe()})"
    print(f"moebench export: {label}, impl {impl}, weights random_weights(seed={args.seed})")
    if args.format == "trt":
        report = export_engine(
            weights,
            out,
            impl=impl,
            opset=args.opset,
            min_tokens=args.min_tokens,
            opt_tokens=args.opt_tokens,
            max_tokens=args.max_tokens,
        )
    else:
        threshold = args.external_threshold if args.external_threshold is not None else DEFAULT_EXTERNAL_THRESHOLD
        report = export_onnx(
            weights, out, flavor=args.flavor, impl=impl, opset=args.opset, external_threshold=threshold
        )
    print("\n".join(report.lines()))
    if args.no_parity:
        return 0
    return _parity(report, weights, args)


def _parity(report, weights, args) -> int:
    """Run the written file on fresh / steered inputs and compare with the fp64 reference."""
    from moebench.export.file_parity import check_cases, input_cases

    device = prepare_device_arg(args.device) if args.device else "cpu"
    if args.format == "trt":
        from moebench.export.tensorrt_engine import TrtMoE

        runner, target = TrtMoE(report.engine_path), "TensorRT"
        device = "cuda"
    else:
        from moebench.export.ort_runner import OrtMoE, provider_missing
        from moebench.impls.onnx_runtime import ORT_CPU_DTYPES

        reason = provider_missing(device)
        if reason is None and device == "cpu" and weights.spec.dtype not in ORT_CPU_DTYPES:
            reason = (
                f"ONNX Runtime's CPU provider has no {dtype_name(weights.spec.dtype)} kernels for this graph "
                "(its MatMul and com.microsoft.MoE take fp32 / fp16); run it with --device cuda"
            )
        if reason:
            print(f"parity: not run on {device}: {reason}")
            return 0
        runner, target = OrtMoE(report.onnx_path, device), f"ONNX Runtime {device.upper()}"
    weights = weights.to(device)
    results = check_cases(lambda x: runner.run(x), weights, input_cases(weights))
    rows = [
        [r.case, "PASS" if r.ok else "FAIL", f"{r.result.rel_l2:.2e}" if r.result else "-", r.error or ""]
        for r in results
    ]
    print(f"\nparity of {report.onnx_path.name if args.format == 'onnx' else report.engine_path.name} on {target}:")
    print(tabulate(rows, headers=["case", "result", "rel_l2", "detail"]))
    failed = sum(not r.ok for r in results)
    print(
        f"{len(results) - failed}/{len(results)} cases passed (tolerance {dtype_name(weights.spec.dtype)}: "
        f"{results[0].result.tolerance if results and results[0].result else '-'})"
    )
    return 1 if failed else 0


def _baseline() -> str:
    for info in registry.all_impls():
        if info.baseline:
            return info.name
    return "naive_loop"


def _run_qmoe_bench(args: argparse.Namespace, device: str) -> int:
    """--bench --quant: the unquantised ort-fused graph beside QMoE graphs (moebench.export.qmoe_bench)."""
    from pathlib import Path

    import onnxruntime

    from moebench.export.qmoe_bench import markdown, run_qmoe_bench
    from moebench.results import environment, write_rows

    if device != "cpu":
        raise MoEInputError("--quant: the QMoE comparison runs on the CPU provider (--device cpu)")
    plain = argparse.Namespace(**{**vars(args), "quant": None})  # the formats are the QMoE graphs', not the spec's
    specs = resolve_specs(plain, default_presets=("small-8x2",), default_dtypes=("fp32",))
    rows = []
    for spec in specs:
        rows += run_qmoe_bench(spec, args.quant, args.tokens or [1, 16, 128], seed=args.seed, reps=args.reps or 10)
    env = environment(device)
    rows = [{**r, **env, "onnxruntime": onnxruntime.__version__} for r in rows]
    keys = ["graph", "quant", "preset", "T", "median_ms", "p20_ms", "p80_ms", "model_bytes"]
    keys += ["rel_l2_vs_unquantized", "rel_l2_vs_dequantized"]
    print(tabulate([[_fmt(r[k]) for k in keys] for r in rows], headers=keys))
    out = args.out or "results/cpu/qmoe-bench.csv"
    page = write_rows(out, rows).with_suffix(".md")
    page.write_text(markdown(rows))
    print(f"\n{len(rows)} row(s); wrote {Path(out)} and {page} ({env['device_name']}, torch {env['torch']})")
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from moebench.export.deploy_bench import run_deploy_bench

    device = prepare_device_arg(args.device)
    if args.quant:
        return _run_qmoe_bench(args, device)
    specs = resolve_specs(args, default_presets=("small-8x2",), default_dtypes=("fp32",))
    tokens = args.tokens or [1, 16, 128]
    print(f"moebench export --bench on {device}: {len(specs)} problem(s) x T={tokens}")
    result = run_deploy_bench(
        specs, tokens, device, compare=tuple(args.compare or ()), out=args.out, seed=None, reps=args.reps
    )
    shown = [
        [r["impl"], r["kind"], r["preset"], r["dtype"], r["T"], *_times(r), r.get("runs", ""), r.get("cache", ""),
         r["method"], _fmt(r.get("parity_rel_l2")), r["status"], r["note"]]
        for r in result.rows
    ]  # fmt: skip
    if shown:
        print(tabulate(shown, headers=["impl", "kind", "preset", "dtype", "T", "median ms", "p20..p80", "n", "cache",
                                       "method", "rel_l2", "status", "note"]))  # fmt: skip
    if result.left_out:
        print("\nnot run:")
        print(tabulate(result.left_out, headers=["impl", "reason"]))
    print(f"\n{len(result.rows)} row(s)" + (f"; wrote {result.path}" if result.path else "; nothing written"))
    bad = [r for r in result.rows if r["status"] not in ("ok", "invalid")]  # invalid: an artefact, not a failure
    return 1 if bad else 0


def _times(row: dict) -> list[str]:
    """Median and p20..p80 of a row as text; 'invalid' for a row above a measured ceiling (not a result)."""
    if row["status"] == "invalid":
        return ["invalid", ""]
    if not isinstance(row.get("median_ms"), float):
        return ["", ""]
    return [_fmt(row["median_ms"]), f"{_fmt(row['p20_ms'])}..{_fmt(row['p80_ms'])}"]


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value or "")
