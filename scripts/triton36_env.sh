#!/usr/bin/env bash
# Run a command with Triton 3.6 (the GPU image's) in place of the installed Triton, on this CPU machine:
#
#   source .venv/bin/activate
#   TRITON_INTERPRET=0 bash scripts/triton36_env.sh python -m moebench.compile_check --impl block_sparse --backward
#   TRITON_INTERPRET=1 bash scripts/triton36_env.sh python -m pytest tests/test_block_sparse.py -q
#
# The first call installs triton==3.6.0 (it bundles ptxas, cuobjdump and nvdisasm of CUDA 12.8) and
# numpy<2.4 into .triton36/ (git ignores it; TRITON36_DIR moves it) with the active Python's pip, from
# the local package index; later calls reuse it. The command then runs with that folder first on
# PYTHONPATH, so it shadows the venv's triton and numpy and nothing else (torch stays the venv's).
# numpy<2.4: Triton 3.6's interpreter turns one-element arrays into ints with int(), an error from
# numpy 2.4 on (3.9's interpreter no longer does). Without a command it prints the versions it runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${TRITON36_DIR:-$root/.triton36}
python=${PYTHON:-python}
version=3.6.0

if ! PYTHONPATH=$target "$python" -c "import sys, triton; sys.exit(triton.__version__ != '$version')" 2>/dev/null; then
  rm -rf "$target"
  "$python" -m pip install -q --disable-pip-version-check --no-deps --target "$target" "triton==$version" "numpy<2.4"
fi
export PYTHONPATH=$target${PYTHONPATH:+:$PYTHONPATH}
if [ $# -eq 0 ]; then
  exec "$python" -c "import numpy, torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
'numpy', numpy.__version__, 'from', triton.__file__)"
fi
exec "$@"
