"""How fast does mnistres train and evaluate, next to a PyTorch loop written the tutorial way?

In one run, side by side and interleaved round by round (so that a busy neighbour on the
machine slows both sides alike), this measures:

1. training images/s of `mnistres` (its trainer, default recipe) and of a baseline written
   as PyTorch tutorials do it: torchvision's MNIST dataset with ToTensor + Normalize, a
   DataLoader, the same model in the default NCHW layout, the same optimizer (Adam, lr 0.001)
   with its default implementation, and `loss.item()` every step; at each batch size given;
2. evaluation images/s on the test set: `mnistres`'s evaluation against the tutorial's test
   loop (DataLoader with batches of 1,000, `torch.no_grad()`);
3. time to a test accuracy (99.0 % by default): training seconds, evaluation excluded, and images
   seen, of the default recipe and of `--preset fast` (one run per `--seeds`), with a test-set
   evaluation after every epoch; each followed by one full-resolution epoch of all the training
   images at the recipe's batch size (and at `--reference-batch-sizes`), and the ratio of the two.

It prints a table and writes every measurement as JSON.

    python benchmarks/speed.py --data-dir ../shared/data --rounds 5 --json benchmarks/results/speed.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
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
from rich.table import Table

import mnistres
from mnistres import config as config_module
from mnistres.train import data as data_module, metrics, model as model_module
from mnistres.runs import rundir
from mnistres.api import Callback
from mnistres.trainer import train

BASELINE_LR = 0.001  # the report's (and mnistres's default) Adam learning rate
BASELINE_EVAL_BATCH = 1000  # pytorch/examples' MNIST uses --test-batch-size 1000


# --- the baseline: a training loop as the PyTorch tutorials write it ---------------------


def torchvision_root(data_dir: Path, scratch: Path) -> Path:
    """A folder torchvision's MNIST class can read: it wants the IDX files uncompressed in
    <root>/MNIST/raw/, and our data folder may hold only the .gz files (and be read-only)."""
    source = data_module.raw_dir("mnist", data_dir)
    target = scratch / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for pair in data_module.FILES.values():
        for stem in pair:
            if (source / stem).is_file():
                shutil.copyfile(source / stem, target / stem)
            else:
                with gzip.open(source / f"{stem}.gz", "rb") as packed, open(target / stem, "wb") as plain:
                    shutil.copyfileobj(packed, plain)
    return scratch


def tutorial_datasets(root: Path) -> tuple[Any, Any]:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    return (datasets.MNIST(str(root), train=True, download=False, transform=transform),
            datasets.MNIST(str(root), train=False, download=False, transform=transform))


def tutorial_train(train_set: Any, images: int, batch_size: int, seed: int) -> float:
    """Images/s of one pass over `images` training images, tutorial style."""
    torch.manual_seed(seed)
    subset = torch.utils.data.Subset(train_set, torch.randperm(len(train_set))[:images].tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=True)
    model = model_module.from_config(config_module.RunConfig())
    optimizer = torch.optim.Adam(model.parameters(), lr=BASELINE_LR)
    model.train()
    running_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for data, target in loader:
        optimizer.zero_grad()
        output = model(data)
        loss = torch.nn.functional.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        correct += (output.argmax(1) == target).sum().item()
        seen += len(target)
    return seen / (time.perf_counter() - start)


def tutorial_eval(test_set: Any) -> float:
    """Images/s of the tutorial's test loop over the whole test set."""
    loader = torch.utils.data.DataLoader(test_set, batch_size=BASELINE_EVAL_BATCH)
    model = model_module.from_config(config_module.RunConfig())
    model.eval()
    test_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for data, target in loader:
            output = model(data)
            test_loss += torch.nn.functional.cross_entropy(output, target, reduction="sum").item()
            correct += (output.argmax(1) == target).sum().item()
            seen += len(target)
    return seen / (time.perf_counter() - start)


# --- mnistres: the library as users run it -----------------------------------------------


def mnistres_train(data_dir: Path, out: Path, images: int, batch_size: int, seed: int, run: str,
                   **changes: Any) -> float:
    """Images/s of one epoch over `images` training images with `mnistres.train` (the default
    recipe at this batch size, with `changes`). A 0.2 % hold-out stands in for the test set, so
    that the run's closing evaluation costs next to nothing; the figure covers the training loop only."""
    settings = config_module.from_dict({
        "data_dir": str(data_dir), "download": False, "train_size": images, "batch_size": batch_size, "epochs": 1,
        "val_split": 0.002, "precise_bn": 0, "seed": seed, "callbacks": [], "out_dir": str(out), "name": run,
        **changes,
    })
    result = train(settings, console=Console(quiet=True))
    return float(result.history[-1]["images_per_s"])


# Each engine choice switched off on its own, to show what it contributes: the training sides at
# --ablation-batch-size, the evaluation side next to the others.
TRAIN_ABLATIONS = {
    "mnistres, NCHW layout": {"channels_last": False},
    "mnistres, unfused optimizer": {"optimizer": "adam:fused=false"},
}
EVAL_ABLATIONS = {"mnistres, eval batches of 1,000": 1000}


def mnistres_eval(data_dir: Path, batch_size: int | None = None) -> float:
    """Images/s of `mnistres`'s evaluation (the trainer's `metrics.measure`, its batch size
    unless `batch_size`) on the test set, its tensors already on the device as during training."""
    images, labels = data_module.load_split("mnist", data_dir, "test", download=False)
    split = data_module.Split(images, labels)
    mean, std = data_module.normalisation("mnist")
    model = model_module.from_config(config_module.RunConfig()).to(memory_format=torch.channels_last)
    batches = data_module.Batches(split, batch_size or metrics.eval_batch_size(images.device), mean=mean, std=std,
                                  channels_last=True)
    start = time.perf_counter()
    metrics.measure(model, batches)
    return len(split) / (time.perf_counter() - start)


class StopAtAccuracy(Callback):
    """Ends the run after the first epoch whose test accuracy reaches `target`."""

    def __init__(self, target: float) -> None:
        self.target = target

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        if logs["val_acc"] >= self.target:
            trainer.stop_reason = f"reached {self.target:.2%} test accuracy"


def recipe_settings(data_dir: Path, out: Path, preset: str | None, train_size: int | None, seed: int,
                    name: str, **changes: Any) -> config_module.RunConfig:
    options = {"data_dir": str(data_dir), "download": False, "train_size": train_size, "seed": seed,
               "callbacks": [], "out_dir": str(out), "name": name, **changes}
    return config_module.layered({}, "benchmark", options, preset=preset)


def time_to_accuracy(data_dir: Path, out: Path, target: float, preset: str | None, train_size: int | None,
                     seed: int, label: str | None = None, **changes: Any) -> dict[str, Any]:
    """Train the recipe (`preset` with `changes`; `label` names it in the results) until the end of the first
    epoch whose test accuracy reaches `target`."""
    settings = recipe_settings(data_dir, out, preset, train_size, seed,
                               "to-target-" + "".join(c if c.isalnum() else "-" for c in label or preset or "default")
                               + f"-seed{seed}", **changes)
    result = train(settings, console=Console(quiet=True), extra_callbacks=[StopAtAccuracy(target)])
    history = result.history
    reached = next((row["epoch"] for row in history if row["val_acc"] >= target), None)
    counted = history if reached is None else history[:reached]
    return {
        "recipe": label or (f"--preset {preset}" if preset else "defaults"),
        "settings": rundir.result_settings(settings.to_dict()),  # all that makes the result, as a run records it
        "seed": seed,
        "target": target,
        "reached_at_epoch": reached,
        "train_seconds": sum(row["seconds"] for row in counted),
        # Training images seen up to the end of the epoch that reached the target (or of the run).
        "images_seen": len(counted) * result.summary["train_images"],
        "val_acc_per_epoch": [row["val_acc"] for row in history],
        "seconds_per_epoch": [row["seconds"] for row in history],
    }


def full_epoch_seconds(data_dir: Path, out: Path, preset: str | None, seed: int, batch_size: int | None = None) -> float:
    """Training seconds of one epoch over all the training images at full resolution: the recipe at its
    batch size (or `batch_size`) with no subset and no low-resolution steps, the yardstick of issue 16's
    "half the time of one full-resolution epoch"."""
    changes: dict[str, Any] = {"epochs": 1, "low_res": 0, "low_res_epochs": 0.0, "precise_bn": 0}
    if batch_size:
        changes["batch_size"] = batch_size
    settings = recipe_settings(data_dir, out, preset, None, seed,
                               f"full-epoch-{preset or 'default'}-bs{batch_size or 'own'}-seed{seed}", **changes)
    settings = settings.replace(train_size=None)  # the whole training set, whatever the recipe's subset
    result = train(settings, console=Console(quiet=True))
    return float(result.history[0]["seconds"])


# --- the run -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": __import__("torchvision").__version__, "mnistres": mnistres.__version__}


def summarise(sides: dict[str, list[float]]) -> dict[str, Any]:
    """Per side: its median, its ratio to the baseline's median, and the median over rounds of its
    ratio to mnistres in the same round (paired, so that a slow spell of the machine that hits one
    round cancels out)."""
    baseline, ours = sides["baseline"], sides["mnistres"]
    return {
        "sides": {
            name: {
                "images_per_s": values,
                "median": statistics.median(values),
                "ratio_to_baseline": statistics.median(values) / statistics.median(baseline),
                "round_ratios_to_mnistres": [a / b for a, b in zip(values, ours)],
                "paired_ratio_to_mnistres": statistics.median(a / b for a, b in zip(values, ours)),
            }
            for name, values in sides.items()
        },
        "ratio_of_medians": statistics.median(ours) / statistics.median(baseline),
    }


def interleaved(measures: dict[str, Any], rounds: int, console: Console, label: str) -> dict[str, list[float]]:
    """Run every side once per round, rotating who goes first, so that no side always meets
    the machine warmer (or busier) than the others."""
    names = list(measures)
    values: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            values[name].append(measures[name](round_number))
        console.print(f"{label}, round {round_number + 1}: " + ", ".join(
            f"{name} {values[name][-1]:,.0f} img/s" for name in names), highlight=False)
    return values


PARTS = ("train", "eval", "time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNISTRES_DATA_DIR"),
                        help="folder holding MNIST/raw/ (default: $MNISTRES_DATA_DIR)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--images", type=int, default=12800, help="training images per throughput measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
    parser.add_argument("--eval-rounds", type=int, default=7, help="interleaved rounds of the evaluation measurement")
    parser.add_argument("--ablation-batch-size", type=int, default=32,
                        help="batch size at which each engine choice is also measured switched off")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy for the time-to-accuracy runs")
    parser.add_argument("--recipes", nargs="*", default=["default", "fast"],
                        help="time-to-accuracy runs: 'default' and/or preset names (none: skip)")
    parser.add_argument("--train-size", type=int,
                        help="training images for time-to-accuracy (default: the recipe's, else all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the time-to-accuracy runs")
    parser.add_argument("--reference-batch-sizes", type=int, nargs="*", default=[],
                        help="also time one full-resolution epoch at these batch sizes, beside the recipe's own")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to measure (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir (or MNISTRES_DATA_DIR) is needed: the folder holding MNIST/raw/")
    data_dir = Path(args.data_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # each round's line as it comes, also into a log file
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a log file: room for the table's columns
    started = datetime.now(timezone.utc)
    results: dict[str, Any] = {"date": started.isoformat(timespec="seconds"), "machine": machine(),
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}

    with tempfile.TemporaryDirectory(prefix="mnistres-bench-") as scratch_text:
        scratch = Path(scratch_text)
        train_set, test_set = tutorial_datasets(torchvision_root(data_dir, scratch / "torchvision"))
        images = min(args.images, len(train_set) - 1)

        runs = scratch / "runs"
        # One short untimed pass of each kind first, so that one-time costs (lazy imports, the first
        # kernel selection) fall on neither side of the first round.
        mnistres_train(data_dir, runs, min(images, 256), args.batch_sizes[0], 0, "warm-up")
        tutorial_train(train_set, min(images, 256), args.batch_sizes[0], 0)
        if "train" in args.parts:
            results["train"] = measure_training(args, data_dir, runs, train_set, images, console)
        if "eval" in args.parts:
            measures = {
                "mnistres": lambda round_number: mnistres_eval(data_dir),
                "baseline": lambda round_number: tutorial_eval(test_set),
                **{name: lambda round_number, size=size: mnistres_eval(data_dir, size)
                   for name, size in EVAL_ABLATIONS.items()},
            }
            results["eval"] = {"images": len(test_set), **summarise(interleaved(measures, args.eval_rounds, console,
                                                                                "evaluation"))}
        if "time" in args.parts:
            results["time_to_accuracy"] = measure_time_to_accuracy(args, data_dir, runs, console)

    results["wall_seconds"] = (datetime.now(timezone.utc) - started).total_seconds()
    for view in tables(results):
        console.print(view)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        console.print(f"Written: {args.json}", highlight=False)
    return 0


def measure_training(args: argparse.Namespace, data_dir: Path, runs: Path, train_set: Any, images: int,
                     console: Console) -> list[dict[str, Any]]:
    rows = []
    for batch_size in args.batch_sizes:
        def ours(round_number: int, changes: dict[str, Any] | None = None, tag: str = "",
                 batch_size: int = batch_size) -> float:
            return mnistres_train(data_dir, runs, images, batch_size, round_number,
                                  f"bs{batch_size}-r{round_number}{tag}", **(changes or {}))

        measures: dict[str, Any] = {
            "mnistres": ours,
            "baseline": lambda round_number, batch_size=batch_size: tutorial_train(
                train_set, images, batch_size, round_number),
        }
        if batch_size == args.ablation_batch_size:
            for number, (name, changes) in enumerate(TRAIN_ABLATIONS.items()):
                measures[name] = lambda round_number, changes=changes, tag=f"-a{number}": ours(
                    round_number, changes, tag)
        sides = interleaved(measures, args.rounds, console, f"training, batch {batch_size}")
        rows.append({"batch_size": batch_size, "images": images, **summarise(sides)})
    return rows


def measure_time_to_accuracy(args: argparse.Namespace, data_dir: Path, runs: Path,
                             console: Console) -> list[dict[str, Any]]:
    """Each recipe and seed, then (interleaved, seed by seed) one full-resolution epoch at the recipe's batch
    size and at each reference batch size, so that the ratio compares runs that met the machine alike."""
    outcomes = []
    for recipe in args.recipes:
        preset = None if recipe == "default" else recipe
        for seed in args.seeds:
            outcome = time_to_accuracy(data_dir, runs, args.target, preset, args.train_size, seed=seed)
            full = {"own": full_epoch_seconds(data_dir, runs, preset, seed)}
            for batch_size in args.reference_batch_sizes:
                full[str(batch_size)] = full_epoch_seconds(data_dir, runs, preset, seed, batch_size)
            outcome["full_epoch_seconds"] = full
            outcome["ratio_to_full_epoch"] = outcome["train_seconds"] / full["own"]
            outcomes.append(outcome)
            reached = outcome["reached_at_epoch"]
            accuracies = outcome["val_acc_per_epoch"]
            console.print(f"{outcome['recipe']}, seed {seed}: " + (
                f"{accuracies[reached - 1]:.2%} after epoch {reached}, {outcome['train_seconds']:.1f} s of training"
                if reached else f"{args.target:.2%} not reached in {len(accuracies)} epochs "
                                f"(best {max(accuracies):.2%})")
                + f"; one full-resolution epoch: {full['own']:.1f} s" + "".join(
                    f", {full[str(b)]:.1f} s at batch {b}" for b in args.reference_batch_sizes), highlight=False)
    return outcomes


def tables(results: dict[str, Any]) -> list[Table]:
    """The throughput table (training and evaluation, where measured) and the time-to-accuracy table."""
    settings, made = results["settings"], []
    sections = [(f"training, batch {row['batch_size']}", row) for row in results.get("train", [])]
    if "eval" in results:
        sections.append((f"evaluation, {results['eval']['images']:,} test images", results["eval"]))
    if sections:
        view = Table(title=f"mnistres vs tutorial-style PyTorch: medians of {settings['rounds']} interleaved rounds "
                           f"({settings['eval_rounds']} for evaluation)", title_justify="left")
        for header in ("measure", "side", "images/s", "÷ baseline", "÷ mnistres, paired"):
            view.add_column(header, justify="left" if header in ("measure", "side") else "right")
        for title, row in sections:
            for number, (name, side) in enumerate(row["sides"].items()):
                paired = "" if name == "mnistres" else f"{side['paired_ratio_to_mnistres']:.2f}"
                view.add_row(title if number == 0 else "", name, f"{side['median']:,.0f}",
                             f"{side['ratio_to_baseline']:.2f}", paired)
        made.append(view)
    outcomes = results.get("time_to_accuracy", [])
    if outcomes:
        view = Table(title=f"time to {settings['target']:.1%} test accuracy (training seconds, evaluation excluded), "
                           f"beside one full-resolution epoch", title_justify="left")
        references = sorted({key for outcome in outcomes for key in outcome["full_epoch_seconds"]} - {"own"}, key=int)
        for header in ("recipe", "seed", "reached", "seconds", "images seen", "full epoch, own batch",
                       *(f"full epoch, batch {b}" for b in references), "÷ full epoch"):
            view.add_column(header, justify="left" if header == "recipe" else "right")
        for outcome in outcomes:
            reached = outcome["reached_at_epoch"]
            full = outcome["full_epoch_seconds"]
            view.add_row(
                outcome["recipe"], str(outcome["seed"]),
                f"epoch {reached}: {outcome['val_acc_per_epoch'][reached - 1]:.2%}" if reached
                else f"no (best {max(outcome['val_acc_per_epoch']):.2%})",
                f"{outcome['train_seconds']:.1f}" if reached else "", f"{outcome['images_seen']:,}" if reached else "",
                f"{full['own']:.1f} s (batch {outcome['settings']['batch_size']})",
                *(f"{full[b]:.1f} s" for b in references),
                f"{outcome['ratio_to_full_epoch']:.2f}" if reached else "")
        made.append(view)
    return made


if __name__ == "__main__":
    sys.exit(main())
