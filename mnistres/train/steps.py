"""The step machinery: how an epoch's batches become training steps (one batch, or several merged at
low resolution), and the batches that refresh BatchNorm's statistics before an evaluation.

The loop (`trainer`) takes its steps from here; nothing in here touches the model.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch

from mnistres.train import data as data_module, distributed


class Step(NamedTuple):
    """One training step."""

    done: int  # batches of this epoch used so far, this step's included (the step number callbacks see)
    batches: int  # batches of batch_size images this step takes (several in one low-resolution step)
    inputs: torch.Tensor
    labels: torch.Tensor
    images: int  # images in the global step (under torchrun this process holds a share of them)


class Steps:
    """A run's plan of steps: how many batches (counted over the whole run, so a resumed run agrees)
    train at low resolution, and how many batches one low-resolution step merges."""

    def __init__(self, config: Any, train_images: int, steps_per_epoch: int, generator: torch.Generator,
                 world: distributed.World) -> None:
        self.config, self.train_images, self.generator, self.world = config, train_images, generator, world
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        # Batches of batch_size images trained at low_res.
        self.low_res_steps = round(config.low_res_epochs * steps_per_epoch) if config.low_res else 0
        # Batches of batch_size images that one low-resolution step takes (low_res_batch_size is a multiple).
        self.low_res_merge = max(1, config.low_res_batch_size // config.batch_size)

    def of_epoch(self, batches: data_module.Batches, global_step: Callable[[], int]) -> Iterator[Step]:
        """This epoch's steps. A step is one batch of batch_size images; a low-resolution step takes up to
        low_res_batch_size images (several batches, never past the last low-resolution one), each batch's
        windows drawn for it as they would be alone. Read lazily: `global_step()` is asked before each
        step, as the previous step left it."""
        units, done = iter(batches), 0
        batch_size = self.config.batch_size
        while True:
            position = global_step()
            low = position < self.low_res_steps
            size = min(self.low_res_merge, self.low_res_steps - position) if low else 1
            taken = list(itertools.islice(units, size))
            if not taken:
                return
            # Each batch's global size (this rank holds a share of it).
            wholes = [min(batch_size, self.train_images - (done + i) * batch_size) for i in range(len(taken))]
            if low:
                taken = [(self.low_res_inputs(x, whole), y) for (x, y), whole in zip(taken, wholes)]
            if len(taken) == 1:
                x, y = taken[0]
            else:
                x = torch.cat([x for x, _ in taken]).contiguous(memory_format=self.memory_format)
                y = torch.cat([y for _, y in taken])
            done += len(taken)
            yield Step(done, len(taken), x, y, sum(wholes))

    def low_res_inputs(self, x: torch.Tensor, whole: int) -> torch.Tensor:
        """A step's inputs at low_res: shrunk, or a random window of each (drawn for the `whole` global batch,
        with the batch order's generator, so a resumed run and several processes draw what one run draws)."""
        if self.config.low_res_mode == "crop":
            return data_module.random_crop(x, self.config.low_res, self.generator, whole=whole,
                                           part=distributed.share(whole, self.world))
        return data_module.shrink(x, self.config.low_res)


def refresh_batches(config: Any, data: Any, world: distributed.World,
                    epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Un-augmented training batches for precise BN, `precise_bn` images in an order fixed by seed and
    epoch (its own generator, so the training order does not depend on it). With BatchNorm over the
    global batch each rank takes its share of every batch; otherwise every rank refreshes on all."""
    size = min(512, config.precise_bn)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    batches = data_module.Batches(data.train, size, mean=data.mean, std=data.std, shuffle=True, generator=generator,
                                  channels_last=config.channels_last, world=world if config.sync_bn else None)
    return itertools.islice(batches, math.ceil(config.precise_bn / size))
