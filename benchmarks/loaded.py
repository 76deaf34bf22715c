"""Training speed with another busy process on the machine, beside the same run on a quiet machine.

Each measurement is one `mnistres train` process (a fresh interpreter, so that OpenMP starts with the
settings given), training `--images` real MNIST images for one epoch; its training images/s is read
from the run's metrics.jsonl. Quiet and loaded measurements alternate round by round, and so do the
settings compared (`--variants`), so that a drift of the machine touches every side alike. "Loaded"
is one other process spinning on the CPU (a Python busy loop, as a second job or a browser tab would
be) for the whole of the run.

    python benchmarks/loaded.py --data-dir ../shared/data --rounds 3 --json loaded.json

Variants: `default` (mnistres as installed), `spin` (OpenMP's threads spinning while they wait, the
behaviour before mnistres chose passive waiting: OMP_WAIT_POLICY=ACTIVE), `passive`
(OMP_WAIT_POLICY=PASSIVE), `threads1` (--threads 1). Any other variant is NAME=ENV:VALUE[,...].
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

VARIANTS = {
    "default": ({}, []),
    "spin": ({"OMP_WAIT_POLICY": "ACTIVE"}, []),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "threads1": ({}, ["--threads", "1"]),
}


def variant(text: str) -> tuple[str, dict[str, str], list[str]]:
    if text in VARIANTS:
        return text, *VARIANTS[text]
    name, _, rest = text.partition("=")
    environment = dict(part.split(":", 1) for part in rest.split(",") if part)
    return name, environment, []


def train_speed(data_dir: Path, scratch: Path, images: int, batch_size: int, environment: dict[str, str],
                options: list[str], extra: list[str]) -> float:
    """Training images/s of one run in a fresh process."""
    out = scratch / "runs"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, **environment}
    if "OMP_WAIT_POLICY" not in environment:
        env.pop("OMP_WAIT_POLICY", None)
    command = [sys.executable, "-m", "mnistres", "train", "--data-dir", str(data_dir), "--no-download", "--device",
               "cpu", "--train-size", str(images), "--epochs", "1", "--batch-size", str(batch_size), "--set",
               "precise_bn=0", "--out-dir", str(out), "--name", "run", *options, *extra]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = json.loads((out / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    return float(line["images_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=12800, help="training images per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", nargs="+", default=["default", "spin", "passive", "threads1"])
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more train options, e.g. amp=bf16")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    extra = [item for setting in args.extra for item in ("--set", setting)]
    chosen = [variant(text) for text in args.variants]
    found: dict[str, dict[str, list[float]]] = {name: {"quiet": [], "loaded": []} for name, _, _ in chosen}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            for condition in ("quiet", "loaded"):
                for name, environment, options in (chosen if round_number % 2 == 0 else chosen[::-1]):
                    busy = None
                    if condition == "loaded":
                        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        time.sleep(0.5)
                    try:
                        speed = train_speed(args.data_dir, Path(scratch), args.images, args.batch_size, environment,
                                            options, extra)
                    finally:
                        if busy is not None:
                            busy.kill()
                            busy.wait()
                    found[name][condition].append(speed)
                    print(f"round {round_number + 1} {condition:6} {name:10} {speed:8.0f} images/s", flush=True)
    rows = {}
    print(f"\n{'variant':10} {'quiet (median)':>15} {'loaded (median)':>16} {'loaded/quiet':>13}")
    for name, sides in found.items():
        quiet, loaded = statistics.median(sides["quiet"]), statistics.median(sides["loaded"])
        rows[name] = {"quiet": sides["quiet"], "loaded": sides["loaded"], "quiet_median": quiet,
                      "loaded_median": loaded, "loaded_share": loaded / quiet}
        print(f"{name:10} {quiet:15.0f} {loaded:16.0f} {loaded / quiet:13.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "images": args.images, "batch_size": args.batch_size,
                                         "extra": args.extra, "rounds": args.rounds, "variants": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
