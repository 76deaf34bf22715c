"""What a training step costs at each image side: the price list for `low_res`.

Times forward + backward + optimizer step of the report's model (the `fast` preset's optimizer,
channels-last as the trainer runs it) on random inputs of side 28 (full size) and each smaller
side given, the sides interleaved round by round, and prints each side's median time per step and
its ratio to the full size's.

    python benchmarks/step_cost.py [--batch-size 128] [--sides 20 16 14 12] [--rounds 5] [--steps 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mnistres.train import model as model_module
from mnistres.registry import optimizers
from mnistres.config import IMAGE_SIDE, layered
from mnistres.resolve import resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sides", type=int, nargs="+", default=[20, 16, 14, 12])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per side and round (after 3 untimed)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    parser.add_argument("--width", type=int, default=64, help="channels (64: the report's model)")
    parser.add_argument("--json", help="also write every measurement here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    resolved = resolve(layered({}, "step_cost", {"width": args.width}, preset="fast"))
    model = model_module.from_config(resolved).to(memory_format=torch.channels_last)
    optimizer = optimizers.build(resolved.optimizer, model.parameters(), lr=resolved.config.lr)
    criterion = torch.nn.CrossEntropyLoss()
    labels = torch.randint(0, 10, (args.batch_size,))

    def steps(inputs: torch.Tensor, count: int) -> None:
        for _ in range(count):
            optimizer.zero_grad(set_to_none=True)
            criterion(model(inputs), labels).backward()
            optimizer.step()

    sides = [IMAGE_SIDE] + [side for side in args.sides if side != IMAGE_SIDE]
    seconds: dict[int, list[float]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side in sides:
            inputs = torch.randn(args.batch_size, 1, side, side).contiguous(memory_format=torch.channels_last)
            steps(inputs, 3)
            start = time.perf_counter()
            steps(inputs, args.steps)
            seconds[side].append((time.perf_counter() - start) / args.steps)

    full = statistics.median(seconds[IMAGE_SIDE])
    print(f"batch {args.batch_size}, {torch.get_num_threads()} threads, median of {args.rounds} rounds:")
    for side in sides:
        median = statistics.median(seconds[side])
        print(f"side {side:2d}: {median * 1000:7.1f} ms per step, {median / full:.2f} of full size")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"batch_size": args.batch_size, "threads": torch.get_num_threads(),
                       "seconds_per_step": {str(side): values for side, values in seconds.items()}}, handle, indent=2)


if __name__ == "__main__":
    main()
