#!/usr/bin/env bash
# One GPU session's work, in the order that matters, each step bounded and resumable.
# Run on the device machine from the repo root:  bash scripts/gpu_session.sh STEP [OUT_DIR]
#   STEP = verify | bench | tune | deploy | tests
# Every step writes under OUT_DIR (default: $OUT, else results/gpu-<date>), which the caller copies into
# results/ afterwards (rows carry device, versions, date and command).
set -uo pipefail
step=${1:?usage: gpu_session.sh verify|bench|tune|deploy|tests [OUT_DIR]}
out=${2:-${OUT:-results/gpu-$(date +%Y%m%d)}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
python3 -c 'import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())'
presets=mixtral-8x7b,qwen3-30b-a3b,deepseek-v3,olmoe-1b-7b,gpt-oss-20b
tokens=1,16,128,1024,4096,16384
case "$step" in
  tests)  # the GPU-marked tests and the kernel tests, compiled for real
    python3 -m pytest -q -m gpu tests 2>&1 | tee "$out/pytest-gpu.log"
    python3 -m pytest -q tests/test_triton_grouped.py tests/test_block_sparse.py tests/test_gradparity.py 2>&1 | tee -a "$out/pytest-gpu.log" ;;
  verify)
    moebench verify --device cuda --preset "$presets" --dtype bf16 --tokens "$tokens" --cases 0 --quiet 2>&1 | tee "$out/verify-cuda.log"
    moebench verify --device cuda --impl block_sparse --grad --preset mixtral-8x7b,qwen3-30b-a3b --dtype bf16 --tokens 16,1024 --cases 0 --quiet 2>&1 | tee -a "$out/verify-cuda.log" ;;
  bench)
    moebench bench --device cuda --preset "${PRESETS:-$presets}" --dtype bf16 --tokens "$tokens" \
      --impl naive_loop,grouped_mm,triton_grouped,block_sparse,padded_batch --out "$out/bench-h100.csv" --no-progress
    moebench report "$out/bench-h100.csv" --out "$out/report" ;;
  tune)   # resumable: rerun until nothing is left
    timeout 540 moebench tune --preset "${PRESETS:-$presets}" --dtype bf16 --device cuda --impl triton_grouped \
      --tokens "$tokens" --max-configs 16 --budget 45 --out-dir results/configs --no-progress 2>&1 | tee "$out/tune.log" ;;
  deploy)
    python3 -m moebench.export.gpu_deploy_run --out "$out/deploy" 2>&1 | tee "$out/deploy.log" ;;
  *) echo "unknown step $step"; exit 2 ;;
esac
