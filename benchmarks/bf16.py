"""bf16 against float32 on the CPU: speed, time to 99 % and accuracy, seed by seed.

For each recipe (`--recipes`: the defaults, `--preset fast`) and each seed, one run in float32
(`amp=off`) and one in bf16 (`amp=bf16`), one after the other, alternating which goes first, each
a fresh `mnistres train` process on the real MNIST with the test set evaluated every epoch. From
each run's own files: training images/s (median over its epochs), training seconds to the first
epoch at 99 % test accuracy (evaluation excluded), and the final and best test accuracy.

    python benchmarks/bf16.py --data-dir ../shared/data --seeds 0 1 2 --json bf16.json

Run it on a quiet machine (`uptime`): the speeds are only comparable within one run of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RECIPES = {"fast": ["--preset", "fast"], "default": []}
PRECISIONS = {"float32": "off", "bf16": "bf16"}
TARGET = 0.99


def run(data_dir: Path, out: Path, recipe: str, seed: int, precision: str) -> dict[str, Any]:
    name = f"{recipe}-{precision}-seed{seed}"
    subprocess.run([sys.executable, "-m", "mnistres", "train", "--data-dir", str(data_dir), "--no-download",
                    "--device", "cpu", *RECIPES[recipe], "--seed", str(seed), "--set", f"amp={PRECISIONS[precision]}",
                    "--out-dir", str(out), "--name", name], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((out / name / "summary.json").read_text())
    seconds, to_target = 0.0, None
    for row in history:
        seconds += row["seconds"]
        if to_target is None and row["val_acc"] >= TARGET:
            to_target = seconds
    return {"recipe": recipe, "seed": seed, "precision": precision, "epochs": len(history),
            "images_per_s": statistics.median(row["images_per_s"] for row in history),
            "seconds_to_99": to_target, "train_seconds": seconds, "final_acc": history[-1]["val_acc"],
            "best_acc": max(row["val_acc"] for row in history), "numerics": summary.get("numerics")}


def machine() -> dict[str, Any]:
    import torch

    flags = ""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "flags": [flag for flag in wanted if f" {flag}" in flags], "torch": torch.__version__,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| recipe | precision | seed | images/s | s to 99 % | final acc | best acc |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        to_target = f"{row['seconds_to_99']:.1f}" if row["seconds_to_99"] is not None else "not reached"
        lines.append(f"| {row['recipe']} | {row['precision']} | {row['seed']} | {row['images_per_s']:,.0f} | "
                     f"{to_target} | {100 * row['final_acc']:.2f} % | {100 * row['best_acc']:.2f} % |")
    lines += ["", "| recipe | precision | images/s (median) | s to 99 % (median) | final acc (mean ± sd) |",
              "|---|---|---|---|---|"]
    for recipe in dict.fromkeys(row["recipe"] for row in rows):
        for precision in PRECISIONS:
            chosen = [row for row in rows if row["recipe"] == recipe and row["precision"] == precision]
            if not chosen:
                continue
            reached = [row["seconds_to_99"] for row in chosen if row["seconds_to_99"] is not None]
            finals = [100 * row["final_acc"] for row in chosen]
            spread = f" ± {statistics.stdev(finals):.2f}" if len(finals) > 1 else ""
            lines.append(f"| {recipe} | {precision} | {statistics.median(r['images_per_s'] for r in chosen):,.0f} | "
                         f"{statistics.median(reached):.1f} ({len(reached)} of {len(chosen)} reached)"
                         if reached else f"| {recipe} | {precision} | "
                         f"{statistics.median(r['images_per_s'] for r in chosen):,.0f} | not reached")
            lines[-1] += f" | {statistics.mean(finals):.2f}{spread} % |"
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in args.recipes:
            for index, seed in enumerate(args.seeds):
                order = list(PRECISIONS) if index % 2 == 0 else list(PRECISIONS)[::-1]
                for precision in order:
                    rows.append(run(args.data_dir, Path(scratch), recipe, seed, precision))
                    row = rows[-1]
                    print(f"{recipe} seed {seed} {precision}: {row['images_per_s']:.0f} images/s, "
                          f"to 99 % {row['seconds_to_99']}, final {row['final_acc']:.4f}", flush=True)
                    if args.json:  # kept as it goes: a long study interrupted keeps what it measured
                        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    rows.sort(key=lambda row: (args.recipes.index(row["recipe"]), row["precision"] != "float32", row["seed"]))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "table": table(rows)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
