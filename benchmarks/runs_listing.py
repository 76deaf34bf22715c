"""How long `mnistres runs` takes on a folder of many run directories.

Writes --runs run directories (config.yaml, a 10-epoch metrics.jsonl and summary.json as the
trainer writes them, stand-in checkpoint files that `runs` never opens; a few learning rates and
statuses, one sweep folder) into a temporary folder, then times the listing in this process
(`listing.list_runs`) and as a user runs it (`python -m mnistres runs DIR --json`, start-up
included), each --rounds times, and prints the medians.

    python benchmarks/runs_listing.py [--runs 1000] [--rounds 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnistres.runs import listing, rundir
from mnistres.config import RunConfig

STATUSES = ("completed", "completed", "completed", "interrupted", "failed", "diverged")


def write_runs(folder: Path, count: int) -> None:
    for i in range(count):
        sweep = i % 4 == 0  # every fourth run is a point of one sweep folder
        name = f"lr={0.1 / (1 + i % 3):g},seed={i}" if sweep else f"run-{i:05d}"
        run = folder / ("sweep" if sweep else "") / name
        config = RunConfig(name=name, lr=0.1 / (1 + i % 3), seed=i, epochs=10)
        status = STATUSES[i % len(STATUSES)]
        epochs = 10 if status == "completed" else 4
        history = [{"epoch": e, "train_loss": 0.1, "train_acc": 0.97, "val_loss": 0.05, "val_acc": 0.98 + e / 1000,
                    "lr": config.lr, "seconds": 60.0, "images_per_s": 1000.0, "eval_seconds": 3.0}
                   for e in range(1, epochs + 1)]
        run.mkdir(parents=True)
        rundir.write_config(run, config.to_dict())
        rundir.write_history(run, history)
        rundir.write_summary(run, {"status": status, "message": "", "epochs_completed": epochs,
                                   "epochs_planned": 10, "final": history[-1],
                                   "started": f"2026-01-01T00:00:{i % 60:02d}+00:00"})
        for checkpoint in (rundir.LAST, rundir.BEST):
            (run / checkpoint).write_bytes(b"\0" * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "runs"
        write_runs(folder, args.runs)
        in_process, command = [], []
        for _ in range(args.rounds):  # the two ways alternate, so that a busy spell hits both
            start = time.perf_counter()
            listed, _ = listing.list_runs(folder)
            in_process.append(time.perf_counter() - start)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "mnistres", "runs", str(folder), "--json"],
                                  capture_output=True, text=True, check=True)
            command.append(time.perf_counter() - start)
            assert len(listed) == len(json.loads(done.stdout)["runs"]) == args.runs
    result = {"runs": args.runs, "rounds": args.rounds, "list_runs_seconds": in_process,
              "command_seconds": command}
    print(f"{args.runs:,} run directories: list_runs {statistics.median(in_process):.2f} s, "
          f"`mnistres runs --json` {statistics.median(command):.2f} s (medians of {args.rounds})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
