#!/usr/bin/env bash
# One GPU session's work, in the order that matters, one step per device call, each bounded.
# Run on the device machine from the repo root:  bash scripts/gpu_session.sh STEP [OUT_DIR]
#   STEP = tests | verify | bench | tune | deploy
# Every step writes under OUT_DIR (default: $OUT, else results/gpu-<date>); copy it into results/
# afterwards (the rows carry device, versions, date and command). Tuned configs land in
# OUT_DIR/configs: copy them into results/configs/ so the next call (and the repo) carries them;
# the tuner resumes from what results/configs/ already holds.
# Overrides for a smoke run on a CPU (the same flow on tiny shapes, TRITON_INTERPRET=1):
#   DEVICE=cpu DTYPE=fp32 PRESETS=tiny TOKENS=1,5 bash scripts/gpu_session.sh bench /tmp/smoke
set -uo pipefail
step=${1:?usage: gpu_session.sh tests|verify|bench|tune|deploy [OUT_DIR]}
out=${2:-${OUT:-results/gpu-$(date +%Y%m%d)}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
device=${DEVICE:-cuda}
dtype=${DTYPE:-bf16}
presets=${PRESETS:-mixtral-8x7b,qwen3-30b-a3b,deepseek-v3,olmoe-1b-7b,gpt-oss-20b}
tokens=${TOKENS:-1,16,128,1024,4096,16384}
grad_default=mixtral-8x7b,qwen3-30b-a3b
[ "$device" = cuda ] || grad_default=$presets  # a CPU smoke run keeps to its own (tiny) presets
grad_presets=${GRAD_PRESETS:-$grad_default}
if [ "$device" = cuda ]; then
  python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
fi
python3 -c 'import torch, triton; print(torch.__version__, triton.__version__,
            torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda")' | tee "$out/env.txt"
status=0
logged() {  # logged FILE CMD...: run CMD, append its output to FILE, remember a failure
  local file=$1; shift
  "$@" 2>&1 | tee -a "$file"; local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || status=$rc
}
case "$step" in
  tests)  # the GPU-marked tests, then the kernel tests compiled for real
    logged "$out/pytest-gpu.log" python3 -m pytest -q -m gpu tests
    logged "$out/pytest-gpu.log" python3 -m pytest -q tests/test_triton_grouped.py tests/test_block_sparse.py \
      tests/test_gradparity.py tests/test_compile_check.py ;;
  verify)  # forward parity of every implementation, then block_sparse's gradients
    # the PyTorch-side implementations (exported runtimes on real presets belong to the deploy step)
    logged "$out/verify.log" moebench verify --device "$device" --preset "$presets" --dtype "$dtype" \
      --tokens "$tokens" --cases 0 --quiet \
      --impl "${VERIFY_IMPLS:-naive_loop,padded_batch,padded_batch_capacity,grouped_mm,triton_grouped,block_sparse}"
    logged "$out/verify.log" moebench verify --device "$device" --impl block_sparse --grad --preset "$grad_presets" \
      --dtype "$dtype" --tokens "${GRAD_TOKENS:-16,1024}" --cases 0 --quiet ;;
  bench)
    logged "$out/bench.log" moebench bench --device "$device" --preset "$presets" --dtype "$dtype" \
      --tokens "$tokens" --impl "${IMPLS:-naive_loop,grouped_mm,triton_grouped,block_sparse,padded_batch}" \
      --out "$out/bench.csv" --no-progress ${BENCH_ARGS:-}
    logged "$out/bench.log" moebench report "$out/bench.csv" --out "$out/report" ;;
  tune)  # one preset at a time, timed (the target: <= 120 s per preset and implementation)
    for impl in ${TUNE_IMPLS:-triton_grouped block_sparse}; do
      for preset in ${presets//,/ }; do
        start=$(date +%s)
        logged "$out/tune.log" timeout "${TUNE_TIMEOUT:-240}" moebench tune --preset "$preset" --dtype "$dtype" \
          --device "$device" --impl "$impl" --tokens "$tokens" --max-configs "${MAX_CONFIGS:-16}" \
          --budget "${BUDGET:-10}" --out-dir results/configs --no-progress ${TUNE_ARGS:-}
        echo "tune-time impl=$impl preset=$preset dtype=$dtype seconds=$(( $(date +%s) - start ))" | tee -a "$out/tune.log"
      done
    done
    mkdir -p "$out/configs" && cp -r results/configs/. "$out/configs/" ;;
  deploy)
    logged "$out/deploy.log" python3 -m moebench.export.gpu_deploy_run --out "$out/deploy" --device "$device" \
      ${DEPLOY_ARGS:-} ;;
  *) echo "unknown step $step"; exit 2 ;;
esac
exit $status
