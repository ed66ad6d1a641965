#!/usr/bin/env bash
# The GPU check of mgtutor on a CUDA machine that cannot reach the network; its stages share a budget of
# 480 s (--budget), planned for about 6 minutes on one H100.
#
#   bash benchmarks/gpu_check.sh                  # all stages; results in $OUT (if set) or runs/gpu_check
#   bash benchmarks/gpu_check.sh --dry-run        # say which wheels would be installed and what would run
#   bash benchmarks/gpu_check.sh --steps 500      # further options go to benchmarks/gpu_check.py
#
# The machine needs python3 with a CUDA build of PyTorch, einops, NumPy, SciPy and Matplotlib. Every other
# package comes from .whl/ (made beforehand by benchmarks/fetch_wheels.sh on a machine with network) and is
# installed into $MGTUTOR_SITE (default /tmp/mgtutor-site) only when it is not there already, so the
# machine's own versions are kept. mgtutor runs from this tree through PYTHONPATH: nothing is pip-installed
# into the machine's Python and nothing is downloaded. The stages and the table printed last are described
# in benchmarks/gpu_check.py and benchmarks/README.md ("GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
SITE=${MGTUTOR_SITE:-/tmp/mgtutor-site}
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi

# One Python start: are the assumed packages there, and which carried wheels provide a module that is not
# (the pyyaml wheel provides yaml)?
shopt -s nullglob
wheels=(.whl/*.whl)
absent=$("$PY" - "${wheels[@]}" <<'PYTHON'
import importlib.util
import os
import sys

for module in ("torch", "einops", "numpy", "scipy", "matplotlib"):
    if importlib.util.find_spec(module) is None:
        sys.exit(f"python3 lacks {module}, which the check assumes is installed")
for wheel in sys.argv[1:]:
    dist = os.path.basename(wheel).split("-")[0].lower()
    if importlib.util.find_spec({"pyyaml": "yaml"}.get(dist, dist)) is None:
        print(wheel)
PYTHON
) || exit 2
missing=()
[[ -n "$absent" ]] && mapfile -t missing <<<"$absent"

args=("$@")
if [[ " ${args[*]} " != *" --out "* ]]; then args+=(--out "${OUT:-runs/gpu_check}"); fi
command=("$PY" benchmarks/gpu_check.py "${args[@]}")
if ((DRY)); then
  echo "would install into $SITE: ${missing[*]:-nothing (every carried package is there already)}"
  echo "would run: PYTHONPATH=$PWD:$SITE ${command[*]}"
  exit 0
fi
if ((${#missing[@]})); then
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${missing[@]}"
  echo "installed from .whl/: ${missing[*]}"
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "${command[@]}"
