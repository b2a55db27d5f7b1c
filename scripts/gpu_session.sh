#!/usr/bin/env bash
# The whole GPU session in one command: `moebench session` (moebench/session/), which runs the
# tests, verify, bench and tuning in priority order inside a deadline and writes its files into
# the output folder after every item. Run on the device machine from the repo root:
#   bash scripts/gpu_session.sh                  # pip install -e . (no deps), then the session into $OUT
#   DEVICE=cpu bash scripts/gpu_session.sh /tmp/out   # the same flow on tiny presets (interpreter), anywhere
# Extra arguments go to `moebench session` (e.g. --deadline 300). Afterwards, here:
#   python -m moebench.session.unpack <folder with what came back>   # -> results/<device>/, results/configs/
set -euo pipefail
out=${1:-${OUT:?pass the output folder or set OUT}}
shift $(( $# > 0 ? 1 : 0 ))
device=${DEVICE:-cuda}
python=${PYTHON:-python3}
if [ "$device" = cuda ]; then
  "$python" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null || { echo "install failed"; exit 1; }
fi
export PYTHONUNBUFFERED=1
exec "$python" -m moebench session --device "$device" --out "$out" "$@"
