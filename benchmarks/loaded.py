"""Training speed with another busy process on the machine, beside the same run on a quiet machine.

Each measurement is one `mnistres train` process (a fresh interpreter, so that OpenMP starts with the
settings given), training `--images` real MNIST images per epoch; its training images/s is read from the
run's metrics.jsonl. Three conditions: `quiet`; `loaded`, one other process spinning on the CPU (a Python
busy loop, as a second job or a busy browser tab would be) from before the run starts to its end; and
`late`, a run of two epochs where the busy process starts `--late-after` seconds into the first epoch,
measured by its second epoch (the one a run that follows the load should have adapted for). Conditions
and the settings compared (`--variants`) alternate round by round, so that a drift of the machine
touches every side alike.

    python benchmarks/loaded.py --data-dir ../shared/data --rounds 3 --json loaded.json

Variants: `default` (mnistres as installed: threads=0 follows the cores other processes leave free),
`fixed` (`--threads` = this machine's cores: what threads=0 meant before, torch's default),
`passive` (that, with OpenMP's threads sleeping while they wait: OMP_WAIT_POLICY=PASSIVE),
`threads1` (--threads 1). Any other variant is NAME=ENV:VALUE[,...].
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bf16 import machine  # the machine and its CPU flags, as bf16.py records them (same folder)

CORES = len(os.sched_getaffinity(0))
VARIANTS = {
    "default": ({}, []),
    "fixed": ({}, ["--threads", str(CORES)]),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["--threads", str(CORES)]),
    "threads1": ({}, ["--threads", "1"]),
}
CONDITIONS = ("quiet", "loaded", "late")


def variant(text: str) -> tuple[str, dict[str, str], list[str]]:
    if text in VARIANTS:
        return text, *VARIANTS[text]
    name, _, rest = text.partition("=")
    environment = dict(part.split(":", 1) for part in rest.split(",") if part)
    return name, environment, []


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def train_speed(data_dir: Path, scratch: Path, condition: str, images: int, batch_size: int, late_after: float,
                environment: dict[str, str], options: list[str], extra: list[str]) -> float:
    """Training images/s of one run in a fresh process, under `condition`: its only epoch's, or (late) its
    second's."""
    out = scratch / "runs"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, **environment}
    for name in ("OMP_WAIT_POLICY", "MNISTRES_CPU_OTHERS"):
        if name not in environment:
            env.pop(name, None)
    epochs = 2 if condition == "late" else 1
    command = [sys.executable, "-m", "mnistres", "train", "--data-dir", str(data_dir), "--no-download", "--device",
               "cpu", "--train-size", str(images), "--epochs", str(epochs), "--batch-size", str(batch_size), "--set",
               "precise_bn=0", "--out-dir", str(out), "--name", "run", *options, *extra]
    busy = busy_process() if condition == "loaded" else None
    try:
        if busy is not None:
            time.sleep(0.5)  # spinning before the run starts
        run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if condition == "late":
            while run.poll() is None and not (out / "run" / "config.yaml").exists():  # written as training starts
                time.sleep(0.05)
            time.sleep(late_after)
            busy = busy_process()
        _, errors = run.communicate()
        if run.returncode:
            raise SystemExit(f"the run failed: {errors}")
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    line = json.loads((out / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    return float(line["images_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=12800, help="training images per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--late-after", type=float, default=2.0, help="seconds into the first epoch the load starts (late)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more train options, e.g. amp=bf16")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    extra = [item for setting in args.extra for item in ("--set", setting)]
    chosen = [variant(text) for text in args.variants]
    found: dict[str, dict[str, list[float]]] = {name: {c: [] for c in CONDITIONS} for name, _, _ in chosen}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            for condition in CONDITIONS:
                for name, environment, options in (chosen if round_number % 2 == 0 else chosen[::-1]):
                    speed = train_speed(args.data_dir, Path(scratch), condition, args.images, args.batch_size,
                                        args.late_after, environment, options, extra)
                    found[name][condition].append(speed)
                    print(f"round {round_number + 1} {condition:6} {name:10} {speed:8.0f} images/s", flush=True)
    rows = {}
    baseline = statistics.median(found["fixed"]["quiet"]) if "fixed" in found else None
    print(f"\n{'variant':10} {'quiet':>8} {'loaded':>8} {'late':>8} {'loaded/quiet':>13} {'late/quiet':>11}"
          + (f" {'quiet/fixed':>12}" if baseline else ""))
    for name, sides in found.items():
        medians = {condition: statistics.median(sides[condition]) for condition in CONDITIONS}
        rows[name] = {**sides, **{f"{c}_median": m for c, m in medians.items()},
                      "loaded_share": medians["loaded"] / medians["quiet"], "late_share": medians["late"] / medians["quiet"],
                      **({"quiet_vs_fixed": medians["quiet"] / baseline} if baseline else {})}
        print(f"{name:10} {medians['quiet']:8.0f} {medians['loaded']:8.0f} {medians['late']:8.0f} "
              f"{rows[name]['loaded_share']:13.2f} {rows[name]['late_share']:11.2f}"
              + (f" {rows[name]['quiet_vs_fixed']:12.3f}" if baseline else ""))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "images": args.images,
                                         "batch_size": args.batch_size, "late_after": args.late_after,
                                         "extra": args.extra, "rounds": args.rounds, "variants": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
