#!/usr/bin/env bash
# Bring along what benchmarks/gpu_check.sh needs on a CUDA machine that cannot reach the network.
#
#   bash benchmarks/fetch_wheels.sh            # every package below
#   bash benchmarks/fetch_wheels.sh av         # only those the target machine lacks (leaves room for the weights)
#
# Run it here, where pip reaches an index. It
#   1. downloads into .whl/ (ignored by git) the wheels of every package mgtutor and its tests import that a
#      machine with only PyTorch, einops, NumPy, SciPy and Matplotlib lacks (or of the packages named), at
#      the versions of this checkout's .venv, built for CPython 3.12 on x86-64 Linux (--no-deps: each one
#      is named here);
#   2. writes a float16 copy of the converted I3D weights into weights/fp16/ (half the size of the float32
#      file; I3D's Mixed_5c features from it differ from the float32 weights' by 0.2% in relative norm,
#      a bfloat16 copy would differ by 1.7%), when weights/i3d_kinetics400_rgb.safetensors exists
#      (`mgtutor convert-i3d --out weights/i3d_kinetics400_rgb.safetensors` makes it);
#   3. prints how much would travel, against the 64 MiB a device call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
DEST=.whl
WEIGHTS=weights/i3d_kinetics400_rgb.safetensors
HALF=weights/fp16/i3d_kinetics400_rgb.safetensors
# PyAV decodes and encodes the videos, PyYAML reads configurations, tqdm draws progress, safetensors holds the
# I3D weights; pytest and what it imports run the tests. (Pillow and packaging come with Matplotlib.)
PACKAGES=(av pyyaml tqdm safetensors pytest pluggy iniconfig pygments)
if (($#)); then PACKAGES=("$@"); fi
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

rm -rf "$DEST"  # one version of each package: two would stop the whole install there
mkdir -p "$DEST"
platform_args=()
for platform in "${PLATFORMS[@]}"; do platform_args+=(--platform "$platform"); done
for name in "${PACKAGES[@]}"; do
  version=$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platform_args[@]}" -d "$DEST" "$name==$version"
done

if [[ -f "$WEIGHTS" ]]; then
  "$PY" - "$WEIGHTS" "$HALF" <<'EOF'
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

source, target = sys.argv[1], Path(sys.argv[2])
state = {name: value.half() if value.is_floating_point() else value for name, value in load_file(source).items()}
target.parent.mkdir(parents=True, exist_ok=True)
save_file(state, str(target), metadata={"format": "mgtutor-i3d", "network": "Inception-I3D RGB", "classes": "kinetics-400", "dtype": "float16"})
EOF
else
  echo "no $WEIGHTS: the GPU check will start I3D from random weights (run mgtutor convert-i3d first to carry them)"
fi

tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | awk 'END {print $1}')
wheels=$(du -cb "$DEST"/*.whl | awk 'END {print $1}')
half=0
[[ -f "$HALF" ]] && half=$(du -b "$HALF" | awk '{print $1}')
limit=$((64 * 1024 * 1024))
ls -l "$DEST"
awk -v t="$tree" -v w="$wheels" -v h="$half" -v l="$limit" 'BEGIN {
  printf "working tree %.1f MB, wheels %.1f MB, float16 weights %.1f MB; a call may carry %.1f MB\n", t/1e6, w/1e6, h/1e6, l/1e6
  printf "carry [\".whl\"]: %.1f MB\n", (t + w)/1e6
  if (h > 0) printf "carry [\".whl\", \"weights/fp16\"]: %.1f MB (%s)\n", (t + w + h)/1e6, (t + w + h <= l) ? "fits" : "too large: leave the weights behind"
}'
