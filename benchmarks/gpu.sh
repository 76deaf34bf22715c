#!/usr/bin/env bash
# The GPU checks and figures, on one CUDA GPU in a few minutes; installs nothing (run it where
# `pip install ".[test]"` was done). First the test suite's CUDA-marked tests, then
# benchmarks/gpu.py, which writes gpu.json and gpu.md to OUT_DIR (default benchmarks/results).
#
#   MNISTRES_DATA_DIR=/path/to/data benchmarks/gpu.sh [OUT_DIR] [--dry-run]
#
# --dry-run checks the script on the CPU with tiny synthetic data (the CUDA tests skip there).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/benchmarks/results"
dry_run=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=(--dry-run) ;;
    -*) echo "benchmarks/gpu.sh: unknown option $arg (usage: benchmarks/gpu.sh [OUT_DIR] [--dry-run])" >&2; exit 2 ;;
    *) out="$arg" ;;
  esac
done
# OUT_DIR and MNISTRES_DATA_DIR as given from where the script was started, before it moves to the checkout.
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ -n "${MNISTRES_DATA_DIR:-}" ] && [ -d "$MNISTRES_DATA_DIR" ]; then
  MNISTRES_DATA_DIR="$(cd "$MNISTRES_DATA_DIR" && pwd)"
  export MNISTRES_DATA_DIR
fi
cd "$root"
export PYTHONUNBUFFERED=1
# python3, which every Python on Linux provides (a bare `python` may be missing or another one); $PYTHON overrides it.
python="${PYTHON:-python3}"
# The CUDA tests; pytest exits 5 if none were collected, which fails this script as it should. A
# failure still lets the figures be taken (a lent GPU may not come back soon); the script then
# ends with the tests' exit code.
tests_rc=0
"$python" -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tee "$out/gpu-tests.log" || tests_rc=$?
"$python" benchmarks/gpu.py --out "$out" "${dry_run[@]}"
if [ "$tests_rc" -ne 0 ]; then
  echo "benchmarks/gpu.sh: the CUDA tests failed (exit $tests_rc; $out/gpu-tests.log); the figures were taken" >&2
  exit "$tests_rc"
fi
