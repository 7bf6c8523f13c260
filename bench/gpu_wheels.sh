#!/usr/bin/env bash
# Wheels of the packages mlcalc needs that the device machines lack (Python 3.12 there), into
# .whl/ (ignored by git) for `carry=[".whl"]`; see bench/gpu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" "$(git rev-parse --git-path info/exclude)" 2>/dev/null \
  || echo "/.whl/" >> "$(git rev-parse --git-path info/exclude)"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl ase==3.29.0 vesin==0.6.2 matscipy==1.3.1
ls -l .whl
