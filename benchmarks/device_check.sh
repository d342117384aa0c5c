#!/usr/bin/env bash
# The accelerator check in one command (README "Speed and memory", GPU rows):
#
#   bash benchmarks/device_check.sh [--quick] [OUT_DIR] [device_check.py options]
#
# OUT_DIR defaults to $OUT (the device machine's results folder). Installs nothing from the
# network: jaxstyle runs from this checkout (PYTHONPATH); the machine's Python must already
# have jax, flax, optax, numpy, pillow, h5py (and torch for the baseline). A fresh
# JAXSTYLE_HOME holds the compilation cache, so the second-process figures are honest. JAX
# allocates device memory as it needs it, so the PyTorch baseline's process has room too.
# Writes OUT_DIR/device_check.json and OUT_DIR/device_check.log; exits non-zero when a part
# failed (the others still ran).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"
quick=()
if [ "${1:-}" = "--quick" ]; then quick=(--quick); shift; fi
out="${OUT:-}"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then out="$1"; shift; fi
if [ -z "$out" ]; then
  echo "device_check.sh: give OUT_DIR (or set OUT)" >&2
  exit 2
fi
mkdir -p "$out"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export JAXSTYLE_HOME="$(mktemp -d)"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1
"$python" -c "import jaxstyle" || { echo "device_check.sh: jaxstyle does not import" >&2; exit 1; }
"$python" "$here/device_check.py" --out "$out" ${quick[@]+"${quick[@]}"} "$@" 2>&1 \
  | tee "$out/device_check.log"
status=${PIPESTATUS[0]}
rm -rf "$JAXSTYLE_HOME"
exit "$status"
