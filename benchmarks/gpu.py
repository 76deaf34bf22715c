"""The GPU figures, in one run of a few minutes on one CUDA GPU (benchmarks/gpu.sh runs it after the
CUDA tests).

It measures, with the data already on the GPU as mnistres always keeps it, and bf16 autocast (`amp:
auto`) and cuDNN's benchmark mode on:

1. training images/s at batch 32, 128 and 512 (the default recipe; the second epoch of two, so that
   warm-up stays out of the figure);
2. evaluation images/s on the test set (the trainer's `metrics.measure`);
3. time to 99 % test accuracy with `--preset fast` for seeds 0, 1, 2, with the previous fast preset
   (one epoch of all 60,000 images at batch 128: four times fewer steps than today's batch 32, which
   was tuned on a CPU; a GPU may prefer it) for seeds 0, 1, 2, and with the defaults (seed 0):
   training seconds, evaluation excluded, and the images seen;
4. training images/s at batch 128 with cuDNN's benchmark mode off, to show what it is worth, then with
   `torch.compile` (batch 128 and 512; its compilation, tens of seconds each, is why this comes last).

A lent GPU's time may end before the script does: no measurement starts after --budget seconds (the
skipped ones are listed), and both files are rewritten after every measurement, so whatever was
measured is kept.

It writes gpu.json (every measurement, the machine and the settings) and gpu.md (the tables) to
--out. `--dry-run` does all of it on the CPU with tiny synthetic data and no compilation, to check
the script itself (the test suite runs it so); its figures mean nothing.

    python benchmarks/gpu.py --data-dir DATA --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import machine, mnistres_train, time_to_accuracy  # noqa: E402  (the CPU benchmark's measures)

from mnistres.core import atomic  # noqa: E402
from mnistres.train import data as data_module, metrics, model as model_module
from mnistres.config import RunConfig  # noqa: E402
from mnistres.testing import write_synthetic_dataset  # noqa: E402

BATCH_SIZES = (32, 128, 512)
COMPILED_BATCH_SIZES = (128, 512)  # compilation takes tens of seconds each: the sizes that matter most
SEEDS = (0, 1, 2)
# The script should end within 5 minutes of a lent GPU (issue 16), the CUDA tests included: no
# measurement starts after this many seconds of gpu.py, and every figure is written as it is taken.
BUDGET_SECONDS = 210.0
# The fast preset until 2026-12-01 (docs/benchmarks/fast-preset.md), as changes to today's.
PREVIOUS_FAST = {"batch_size": 128, "lr": 0.2, "schedule": "onecycle", "label_smoothing": 0.1, "low_res": 0,
                 "low_res_epochs": 0.0, "low_res_batch_size": 0}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eval_images_per_s(data_dir: Path, device: torch.device, rounds: int) -> list[float]:
    """The trainer's evaluation on the test set, its tensors on the device; after one warm-up pass."""
    images, labels = data_module.load_split("mnist", data_dir, "test", download=False)
    split = data_module.Split(images.to(device), labels.to(device))
    mean, std = data_module.normalisation("mnist")
    model = model_module.from_config(RunConfig()).to(device=device, memory_format=torch.channels_last)
    batches = data_module.Batches(split, metrics.eval_batch_size(device), mean=mean, std=std, channels_last=True)
    amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    metrics.measure(model, batches, amp)
    found = []
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        metrics.measure(model, batches, amp)  # ends in a host sync
        found.append(len(split) / (time.perf_counter() - start))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNISTRES_DATA_DIR"),
                        help="folder holding MNIST/raw/ (default: $MNISTRES_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where gpu.json and gpu.md go")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per throughput figure (median)")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS,
                        help="seconds after which no further measurement starts (the rest is listed as skipped)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny synthetic data, no compilation")
    args = parser.parse_args(argv)
    console = Console(highlight=False)

    scratch = Path(tempfile.mkdtemp(prefix="mnistres-gpu-"))
    try:
        return measure(args, console, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # its runs (and the dry run's data); the figures are in --out


def measure(args: argparse.Namespace, console: Console, scratch: Path) -> int:
    """Every figure, in `scratch` (runs, and the dry run's data); writes gpu.json and gpu.md to args.out."""
    if args.dry_run:
        # Synthetic digits (the figures mean nothing; the script runs).
        data_dir = write_synthetic_dataset(scratch / "data", train_images=640, test_images=256)
        device, images, train_size, rounds = torch.device("cpu"), 512, 512, 1
        compiled_sizes: tuple[int, ...] = ()
        small = {"width": 8, "blocks": 1, "epochs": 2}  # the script's every step, in seconds
    else:
        if not torch.cuda.is_available():
            console.print("benchmarks/gpu.py needs a CUDA GPU (or --dry-run to check it on the CPU)", style="red")
            return 2
        if not args.data_dir or not data_module.raw_dir("mnist", Path(args.data_dir)).is_dir():
            console.print("give --data-dir (or MNISTRES_DATA_DIR): a folder holding MNIST/raw/", style="red")
            return 2
        # 50,000 images per throughput figure: the measure holds 0.2 % of the training file out.
        device, data_dir, images, train_size, rounds = torch.device("cuda"), Path(args.data_dir), 50_000, None, args.rounds
        compiled_sizes = COMPILED_BATCH_SIZES
        small = {}
    torch.backends.cudnn.benchmark = True
    runs = scratch / "runs"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "dry_run": args.dry_run,
        "machine": {**machine(), **({"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                                     "cudnn": torch.backends.cudnn.version()} if device.type == "cuda" else {})},
        "settings": {"amp": "auto (bf16 on CUDA)", "channels_last": True, "cudnn_benchmark": True,
                     "train_images_per_measurement": images, "rounds": rounds, "budget_seconds": args.budget},
        "training": [], "evaluation": None, "time_to_99": [], "skipped": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        """Both files as they stand: a run cut short (a lent GPU's time ends) still leaves every figure taken."""
        results["wall_seconds"] = time.perf_counter() - started
        atomic.write_text(args.out / "gpu.json", json.dumps(results, indent=2) + "\n")
        atomic.write_text(args.out / "gpu.md", markdown(results))

    def in_budget(what: str) -> bool:
        """Whether `what` may start: past --budget seconds it is skipped and said so in both files."""
        if time.perf_counter() - started <= args.budget:
            return True
        results["skipped"].append(what)
        console.print(f"skipped (past the {args.budget:.0f} s budget): {what}")
        return False

    def train_rate(batch_size: int, name: str, **changes: Any) -> None:
        if not in_budget(f"training images/s, batch {batch_size}, {name}"):
            return
        slug = "".join(c if c.isalnum() else "-" for c in name)
        rates = [mnistres_train(data_dir, runs, images, batch_size, 0, f"b{batch_size}-{slug}-{r}", device=device.type,
                                **{**small, "epochs": 2, **changes}) for r in range(rounds)]
        console.print(f"train, batch {batch_size}, {name}: {statistics.median(rates):,.0f} img/s")
        results["training"].append({"batch_size": batch_size, "variant": name, "images_per_s": rates,
                                    "median": statistics.median(rates)})
        save()

    # The most wanted figures first, compilation (tens of seconds each) last.
    for size in BATCH_SIZES:
        train_rate(size, "eager")

    if in_budget("evaluation images/s"):
        rates = eval_images_per_s(data_dir, device, 3)
        console.print(f"evaluation: {statistics.median(rates):,.0f} img/s")
        results["evaluation"] = {"images_per_s": rates, "median": statistics.median(rates)}
        save()

    recipes = ((None, "fast", SEEDS, {}, train_size),
               # The previous fast preset trained on every image: its subset is the whole training set.
               ("the previous --preset fast (batch 128, all images)", "fast", SEEDS, PREVIOUS_FAST, train_size or 60_000),
               (None, None, (0,), {}, train_size))
    for label, preset, seeds, changes, size in recipes:
        for seed in seeds:
            if not in_budget(f"time to 99 %, {label or (f'--preset {preset}' if preset else 'defaults')}, seed {seed}"):
                continue
            found = time_to_accuracy(data_dir, runs, 0.99, preset, size, seed, label, **{**changes, **small})
            console.print(f"to 99 %: {found['recipe']}, seed {seed}: {found['train_seconds']:.2f} s, "
                          f"reached at epoch {found['reached_at_epoch']}")
            results["time_to_99"].append(found)
            save()

    torch.backends.cudnn.benchmark = False
    train_rate(128, "eager, cuDNN benchmark off")
    torch.backends.cudnn.benchmark = True
    for size in compiled_sizes:
        train_rate(size, "compiled", compile=True)

    save()
    console.print(f"wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'} ({results['wall_seconds']:.0f} s)")
    return 0


def markdown(results: dict[str, Any]) -> str:
    where = results["machine"].get("gpu") or f"CPU ({results['machine']['cpu']}), --dry-run: not a measurement"
    lines = [f"# GPU figures: {where}", "",
             f"{results['date']}, torch {results['machine']['torch']}, bf16 autocast, channels-last, data on the "
             f"device; medians of {results['settings']['rounds']} (benchmarks/gpu.py).", "",
             "| training | batch | images/s |", "|---|---:|---:|"]
    lines += [f"| {row['variant']} | {row['batch_size']} | {row['median']:,.0f} |" for row in results["training"]]
    if results["evaluation"]:
        lines += ["", f"Evaluation on the test set: {results['evaluation']['median']:,.0f} images/s."]
    lines += ["", "| to 99 % test accuracy | seed | training s | images seen | reached at epoch |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {row['recipe']} | {row['seed']} | {row['train_seconds']:.2f} | {row['images_seen']:,} | "
              f"{row['reached_at_epoch'] or 'not reached'} |" for row in results["time_to_99"]]
    if results["skipped"]:
        lines += ["", f"Not measured (past the {results['settings']['budget_seconds']:.0f} s budget): "
                  + "; ".join(results["skipped"]) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
