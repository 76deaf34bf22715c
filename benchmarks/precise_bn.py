"""Does refreshing BatchNorm statistics before evaluation change the measured accuracy?

Trains the default recipe for one epoch on a subset of real MNIST, once with `precise_bn=0`
(evaluate with the running averages, as Keras does) and once with the default, for several
seeds and for each schedule given (the report's constant rate, and our cosine default), and
prints the test accuracy of each.

    python benchmarks/precise_bn.py --data-dir ../shared/data [--seeds 5] [--train-size 6000]
                                    [--schedules constant cosine]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from rich.console import Console

from mnistres.config import RunConfig
from mnistres.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--schedules", nargs="+", default=["constant", "cosine"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    quiet = Console(quiet=True)
    settings = [(schedule, images) for schedule in args.schedules for images in (0, RunConfig.precise_bn)]
    results: dict[tuple[str, int], list[float]] = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory() as out:
        for seed in range(args.seeds):
            for schedule, images in settings:
                config = RunConfig(data_dir=args.data_dir, download=False, train_size=args.train_size, epochs=1,
                                   seed=seed, schedule=schedule, precise_bn=images, callbacks=(), out_dir=out,
                                   name=f"s{seed}-{schedule}-bn{images}")
                accuracy = train(config, console=quiet).history[-1]["val_acc"]
                results[schedule, images].append(accuracy)
                print(f"seed {seed}  schedule {schedule:<9s} precise_bn={images:<5d} test accuracy {accuracy:.4f}",
                      flush=True)
    print(f"\none epoch on {args.train_size:,} training images, {args.seeds} seeds:")
    for (schedule, images), accuracies in results.items():
        print(f"schedule {schedule:<9s} precise_bn={images:<5d} min {min(accuracies):.4f}  "
              f"median {statistics.median(accuracies):.4f}  max {max(accuracies):.4f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([{"schedule": s, "precise_bn": i, "accuracies": a} for (s, i), a in results.items()],
                      handle, indent=2)


if __name__ == "__main__":
    main()
