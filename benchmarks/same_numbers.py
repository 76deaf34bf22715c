"""Same commands, same numbers: does a change to the code leave every run's metrics as they were?

    python benchmarks/same_numbers.py --base REV [--work DIR]

Checks out REV (any git revision) into a temporary folder, then runs three tiny jobs on synthetic
data twice, once with REV's mnistres and once with the working tree's (each on PYTHONPATH, so
nothing is installed): a train run (EMA, low-resolution steps, augmentation, the per-class callback),
a sweep of two points as child processes, and a torchrun run of 2 processes (gloo, CPU). It compares
each run's metrics.jsonl, timings aside (seconds, images_per_s, eval_seconds), and last.pt's weights,
and prints one line per run; the exit code is 1 if anything differs. A refactoring that keeps
behaviour must pass it. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent.parent
TIMING = ("seconds", "images_per_s", "eval_seconds")
TINY = ["--device", "cpu", "--no-download", "--batch-size", "32", "--lr", "0.01", "--set", "width=8",
        "--set", "blocks=1", "--set", "precise_bn=96", "--threads", "1"]


def jobs(data: Path, out: Path) -> list[tuple[str, list[str], list[Path]]]:
    """(label, command, run directories it writes)."""
    train = [sys.executable, "-m", "mnistres", "train", "--data-dir", str(data), *TINY, "--epochs", "3",
             "--train-size", "161", "--set", "ema=0.9", "--set", "augment=true", "--set", "low_res=20",
             "--set", "low_res_epochs=1", "--set", "low_res_batch_size=64", "--callback", "per_class_accuracy",
             "--out-dir", str(out), "--name", "train"]
    sweep = [sys.executable, "-m", "mnistres", "sweep", "lr", "0.1", "0.01", "--data-dir", str(data), *TINY,
             "--epochs", "2", "--train-size", "128", "--jobs", "2", "--out-dir", str(out), "--name", "sweep"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "mnistres", "train", "--data-dir", str(data), *TINY, "--epochs", "2", "--train-size", "161",
                "--set", "low_res=20", "--set", "low_res_mode=crop", "--set", "low_res_epochs=1",
                "--out-dir", str(out), "--name", "torchrun"]
    return [("train", train, [out / "train"]),
            ("sweep", sweep, [out / "sweep" / "lr=0.1,seed=0", out / "sweep" / "lr=0.01,seed=0"]),
            ("torchrun (2 processes)", torchrun, [out / "torchrun"])]


def history(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def run_all(code: Path, data: Path, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    for label, command, _ in jobs(data, out):
        done = subprocess.run(command, env=env, cwd=out.parent, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{label} failed with {code}'s mnistres (exit {done.returncode}):\n{done.stdout}{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare the working tree with")
    parser.add_argument("--work", type=Path, help="a folder for the runs (default: a temporary one, removed)")
    arguments = parser.parse_args()
    work = Path(arguments.work or tempfile.mkdtemp(prefix="same-numbers-"))
    try:
        base = work / "base"
        base.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(HERE), "archive", arguments.base, "mnistres"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        sys.path.insert(0, str(HERE))
        from mnistres.testing import write_synthetic_dataset

        data = write_synthetic_dataset(work / "data")
        for side, code in (("before", base), ("after", HERE)):
            (work / side / "runs").mkdir(parents=True)
            run_all(code, data, work / side / "runs")
        differ = 0
        for label, _, run_dirs in jobs(data, work / "before" / "runs"):
            for before in run_dirs:
                after = work / "after" / "runs" / before.relative_to(work / "before" / "runs")
                same_history = history(before) == history(after)
                old, new = weights(before), weights(after)
                same_weights = old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
                differ += not (same_history and same_weights)
                print(f"{label:24} {before.name:16} metrics.jsonl {'same' if same_history else 'DIFFERS'}, "
                      f"last.pt weights {'same' if same_weights else 'DIFFER'}")
        print(f"{arguments.base} -> working tree: {'the same numbers' if not differ else f'{differ} runs differ'}")
        return 1 if differ else 0
    finally:
        if arguments.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
