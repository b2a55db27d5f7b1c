"""GPU session script: export the real presets, run them on ONNX Runtime's CUDA provider (and
TensorRT when importable), check parity and time them. Writes a CSV of bench rows and a log.

    python -m moebench.export.gpu_deploy_run --out $OUT/deploy [--presets mixtral-8x7b,qwen3-30b-a3b]
        [--dtypes fp16,bf16] [--tokens 1,128,4096] [--flavors portable,ort-fused] [--compare grouped_mm]

Needs: a CUDA GPU, onnxruntime-gpu (CUDAExecutionProvider). Per (preset, dtype):
  1. random canonical weights on the GPU (seeded; the seed is in every row);
  2. per flavour: export to a work directory (mixtral's fp16 expert weights, 8*3*4096*14336*2 B
     = 2.8 GB, exceed protobuf's 2 GB limit -> external data), onnx.checker + TensorRT static check;
  3. an ORT CUDA session (strict: no CPU fallback; retried without, noted, if that fails);
  4. per T: parity of one run against the fp64 reference, then moebench.timing (CUDA events,
     no graph: ORT's Run blocks the host), rows via moebench.bench.measure_callable;
  5. TensorRT (portable graph, profile 1..max T) when `import tensorrt` works.
The portable graph computes all E experts for every token: E/k = 4x (mixtral) and 16x (qwen3)
the useful FLOPs; the rows' TFLOP/s count useful FLOPs only, so they show that cost.
Nothing is written unless measured; failures become rows with status 'error' and the message.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from pathlib import Path

import torch

DEFAULT_PRESETS = ("mixtral-8x7b", "qwen3-30b-a3b")
DEFAULT_DTYPES = ("fp16", "bf16")
DEFAULT_TOKENS = (1, 128, 4096)


def _log(fh, text: str) -> None:
    print(text, flush=True)
    fh.write(text + "\n")
    fh.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m moebench.export.gpu_deploy_run", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for deploy-gpu.csv and export-log.txt (small files only)")
    p.add_argument("--work", default="/tmp/moebench-deploy", help="directory for the (large) .onnx / .engine files")
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    p.add_argument("--dtypes", default=",".join(DEFAULT_DTYPES))
    p.add_argument("--tokens", default=",".join(map(str, DEFAULT_TOKENS)))
    p.add_argument("--flavors", default="portable,ort-fused")
    p.add_argument("--compare", default="grouped_mm", help="PyTorch implementations timed on the same cells ('' none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--device", default="cuda", help="cuda (the point); cpu only for a smoke test with tiny presets")
    args = p.parse_args(argv)

    from moebench.export.ort_runner import provider_missing

    out_dir, work = Path(args.out), Path(args.work)
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "export-log.txt", "w")  # noqa: SIM115  (kept open for the whole run)
    reason = provider_missing(args.device)
    if reason:
        _log(log, f"ONNX Runtime on {args.device}: not available: {reason}")
    rows: list[dict] = []
    try:
        _run(args, work, log, rows, ort_ok=reason is None)
    finally:
        if rows:
            from moebench.results import write_rows

            path = write_rows(out_dir / "deploy-gpu.csv", rows)
            _log(log, f"wrote {len(rows)} row(s) to {path}")
        else:
            _log(log, "no rows measured")
        log.close()
    return 0 if rows and all(r["status"] == "ok" for r in rows) else 1


def _run(args, work: Path, log, rows: list[dict], *, ort_ok: bool) -> None:
    import onnxruntime as ort

    from moebench import registry
    from moebench.bench import (
        BenchOptions,
        Cell,
        bench_impl,
        count_active_experts,
        make_row,
        measure_callable,
    )
    from moebench.ceilings import measure_ceilings
    from moebench.export.exporter import export_onnx
    from moebench.export.ort_fused import unsupported_reason
    from moebench.export.portable import useful_flop_ratio
    from moebench.export.tensorrt_engine import tensorrt_missing
    from moebench.parity import compare, expected_output
    from moebench.presets import get_preset
    from moebench.results import environment
    from moebench.weights import random_inputs, random_weights

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    presets = [s for s in args.presets.split(",") if s]
    dtypes = [s for s in args.dtypes.split(",") if s]
    tokens = [int(t) for t in args.tokens.split(",") if t]
    flavors = [s for s in args.flavors.split(",") if s]
    compare_impls = [s for s in args.compare.split(",") if s]
    trt_reason = tensorrt_missing()
    gpu = torch.cuda.get_device_name() if on_gpu else "none (cpu smoke run)"
    _log(log, f"GPU: {gpu} | torch {torch.__version__} | onnxruntime {ort.__version__} "
              f"providers {ort.get_available_providers()} | TensorRT: {trt_reason or 'available'}")  # fmt: skip
    ceilings = measure_ceilings(device.type, tuple(dtypes), quick=not on_gpu)
    _log(log, f"ceilings: {ceilings.describe()}")
    env = environment(device)
    timing_kwargs = {"reps": args.reps}

    for preset in presets:
        for dtype in dtypes:
            spec = get_preset(preset, dtype)
            weights = random_weights(spec, device=device, seed=args.seed)
            _log(
                log, f"\n== {preset} {dtype}: {spec.describe()}; portable FLOP ratio E/k = {useful_flop_ratio(spec):g}"
            )
            cells = []
            for t in tokens:
                x = random_inputs(spec, t, device=device, seed=args.seed + 1 + t)
                cells.append((t, x, expected_output(x, weights), count_active_experts(x, weights)))
            for name in compare_impls:  # PyTorch implementations on the same inputs, for the side-by-side
                info = registry.get(name)
                ok, why = info.available(device.type)
                if not ok:
                    _log(log, f"{name}: not available: {why}")
                    continue
                for t, x, ref, n_active in cells:
                    cell = Cell(spec, t, weights, x, ref, n_active, args.seed, args.seed + 1 + t)
                    rows += bench_impl(info, cell, device, ceilings, BenchOptions(reps=args.reps), env)
            targets = []
            if ort_ok:
                targets += [(f"ort-{device.type}", f) for f in flavors]
            if on_gpu and trt_reason is None and "portable" in flavors:
                targets.append(("tensorrt", "portable"))
            for runtime, flavor in targets:
                label = f"{runtime}:{flavor}" if runtime != "tensorrt" else "tensorrt"
                why = unsupported_reason(spec) if flavor == "ort-fused" else None
                if why:
                    _log(log, f"{label}: skipped: {why}")
                    continue
                started = time.perf_counter()
                try:
                    runner, note = _make_runner(runtime, flavor, weights, work, preset, dtype, max(tokens), log,
                                                export_onnx)  # fmt: skip
                except Exception as exc:
                    _log(log, f"{label}: export/session failed: {type(exc).__name__}: {exc}")
                    traceback.print_exc(file=log)
                    for t, _, _, n_active in cells:
                        rows.append(make_row(impl=label, kind="deployed", spec=spec, num_tokens=t, timing=None,
                                             n_active=n_active, ceilings=ceilings, note=f"{type(exc).__name__}: {exc}",
                                             weight_seed=args.seed, env=env))  # fmt: skip
                    continue
                _log(log, f"{label}: ready in {time.perf_counter() - started:.1f} s {note}")
                for t, x, ref, n_active in cells:
                    out = torch.full_like(x, float("nan"))
                    try:
                        runner.run(x, out)
                        if on_gpu:
                            torch.cuda.synchronize()
                        res = compare(out, ref, spec.dtype)
                        row = measure_callable(
                            lambda runner=runner, x=x, out=out: runner.run(x, out),
                            spec, t, device.type, label, "deployed",
                            parity_error=res.rel_l2, parity_ok=res.ok, n_active=n_active, ceilings=ceilings,
                            use_graph=False, weight_seed=args.seed, input_seed=args.seed + 1 + t,
                            note="; ".join(s for s in (note, "" if res.ok else f"parity: {res.message}") if s),
                            timing_kwargs=timing_kwargs,
                        )  # fmt: skip
                        rows.append(row)
                        _log(log, f"  T={t}: {row['median_ms']:.4g} ms, rel_l2 {res.rel_l2:.2e} "
                                  f"({'PASS' if res.ok else 'FAIL'}), {row['tflops']:.3g} useful TFLOP/s")  # fmt: skip
                    except Exception as exc:
                        _log(log, f"  T={t}: failed: {type(exc).__name__}: {exc}")
                        rows.append(make_row(impl=label, kind="deployed", spec=spec, num_tokens=t, timing=None,
                                             n_active=n_active, ceilings=ceilings,
                                             note=f"{type(exc).__name__}: {exc}", weight_seed=args.seed,
                                             env=env))  # fmt: skip
                del runner
                _free(on_gpu)
            del weights, cells
            _free(on_gpu)


def _free(on_gpu: bool) -> None:
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()


def _make_runner(runtime, flavor, weights, work: Path, preset, dtype, max_tokens, log, export_onnx):
    """Export the file, check it, and open an ORT CUDA session or a TensorRT engine on it."""
    path = work / f"{preset}-{dtype}-{flavor}.onnx"
    report = export_onnx(weights, path, flavor=flavor, impl="naive_loop")
    for line in report.lines():
        _log(log, f"  {line}")
    if runtime == "tensorrt":
        from moebench.export.tensorrt_engine import TokenProfile, TrtMoE, build_engine

        engine = build_engine(path, path.with_suffix(".engine"), hidden=weights.spec.hidden,
                              profile=TokenProfile(1, min(128, max_tokens), max_tokens))  # fmt: skip
        return TrtMoE(engine), "strongly typed engine"
    from moebench.export.ort_runner import OrtMoE

    if runtime == "ort-cpu":
        return OrtMoE(path, "cpu"), ""
    try:
        return OrtMoE(path, "cuda", strict=True), "all nodes on CUDA"
    except Exception as exc:
        _log(log, f"  strict CUDA session failed ({type(exc).__name__}: {exc}); retrying with CPU fallback allowed")
        return OrtMoE(path, "cuda", strict=False), "CPU fallback allowed for some nodes (strict session failed)"


if __name__ == "__main__":
    sys.exit(main())
