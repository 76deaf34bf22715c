#!/usr/bin/env bash
# The search of examples/tune.yaml on the real MNIST, and the report's baseline recipe at the same budget
# (6,000 training images, 10 % of them held out, 4 epochs, 1 thread per run), seeds 0-2 for the baseline and
# for the recipe the search found. Writes OUT_DIR/tune-summary.json and the runs; prints a table.
#   MNISTRES_DATA_DIR=DIR benchmarks/tune.sh [OUT_DIR]     (about 12 minutes on 2 cores)
set -euo pipefail
out="${1:-benchmarks-tune}"
mkdir -p "$out"
common=(--train-size 6000 --epochs 4 --threads 1 --out-dir "$out/runs" --no-download)
{ date -u +%FT%TZ; uptime; grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } \
    > "$out/machine.txt"
start=$(date +%s.%N)
mnistres tune examples/tune.yaml --trials 24 --jobs 2 "${common[@]}" --json > "$out/tune.json"
end=$(date +%s.%N)
best_params=$(python -c "import json,sys; b=json.load(open(sys.argv[1]))['best']; print(' '.join(f'--set {k}={v}' for k, v in b['params'].items()))" "$out/tune.json")
for seed in 0 1 2; do
    mnistres train --config examples/baseline.yaml --name "baseline-seed$seed" --seed "$seed" --val-split 0.1 \
        "${common[@]}" --json > "$out/baseline-seed$seed.json"
    # shellcheck disable=SC2086  # the found settings, one --set each
    mnistres train --config examples/baseline.yaml --name "found-seed$seed" --seed "$seed" --val-split 0.1 \
        $best_params "${common[@]}" --json > "$out/found-seed$seed.json"
done
for kind in baseline found; do
    for seed in 0 1 2; do
        mnistres eval "$out/runs/$kind-seed$seed/best.pt" --threads 1 --no-download --json > "$out/$kind-seed$seed-test.json"
    done
done
uptime >> "$out/machine.txt"
python - "$out" "$start" "$end" <<'PY'
import json, statistics, sys
from pathlib import Path
out, start, end = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
tune = json.loads((out / "tune.json").read_text())
rows = {}
for kind in ("baseline", "found"):
    held = [json.loads((out / f"{kind}-seed{s}.json").read_text())["summary"]["best"]["val_acc"] for s in range(3)]
    test = [json.loads((out / f"{kind}-seed{s}-test.json").read_text())["accuracy"] for s in range(3)]
    rows[kind] = {"held_out": held, "test": test}
summary = {"search_seconds": round(end - start, 1), "trials": tune["trials"], "best": tune["best"], "seeds": rows}
(out / "tune-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"search: {summary['search_seconds']:.0f} s, trials {tune['trials']}")
print(f"best trial {tune['best']['trial']}: held-out {tune['best']['held_out_acc']:.4f}, test {tune['best']['test']['test_acc']:.4f}, {tune['best']['params']}")
for kind, row in rows.items():
    print(f"{kind:8s} held-out (seeds 0-2) {statistics.fmean(row['held_out']):.4f} ({', '.join(f'{v:.4f}' for v in row['held_out'])}); "
          f"test {statistics.fmean(row['test']):.4f} ({', '.join(f'{v:.4f}' for v in row['test'])})")
PY
