"""Getting a run ready: everything between its config and its first step — threads and device, data and
batches, the model (wrapped for several processes, compiled, averaged), optimizer, schedule, loss and
callbacks. Each step sets the trainer's attributes (`trainer.Trainer`, which declares them), in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistres.train import data as data_module, devices, distributed, metrics
from mnistres.runs import rundir
from mnistres.train import model as model_module
from mnistres.train.ema import WeightAverage
from mnistres.errors import ConfigError, PluginError
from mnistres.registry import callbacks as callback_registry, optimizers, schedulers
from mnistres.train.steps import Steps

# The batch order gets its own stream of random numbers, apart from the subset/hold-out draw.
SHUFFLE_SEED_OFFSET = 1_000_003


def prepare(trainer: Any, root: Path) -> None:
    """Threads, device, data, batches, model and the callbacks: everything before the first step
    (no collective operation in here: `fail_together` wraps it)."""
    config, resolved, world = trainer.config, trainer.resolved, trainer.world
    devices.set_threads(config.threads)
    trainer.device = device = distributed.device(config.device, world)
    trainer.cpu_share = devices.core_share(config.threads, device)  # watches the cores from now on
    trainer.amp = devices.amp_dtype(config.amp, device, trainer.recorded_precision)
    torch.manual_seed(config.seed)
    trainer.data = data = data_module.prepare(
        config.dataset, root, download=config.download, train_size=config.train_size,
        val_split=config.val_split, seed=config.seed, device=device)
    if config.batch_size > len(data.train):
        raise ConfigError(f"batch_size={config.batch_size} is larger than the {len(data.train):,} training images")
    if config.batch_size % world.size:
        raise ConfigError(f"batch_size={config.batch_size} (the global batch) does not divide among the "
                          f"{world.size} processes; use a multiple of {world.size}")
    trainer.shuffle_generator = torch.Generator().manual_seed(config.seed + SHUFFLE_SEED_OFFSET)
    trainer.train_batches = data_module.Batches(
        data.train, config.batch_size, mean=data.mean, std=data.std, shuffle=True,
        generator=trainer.shuffle_generator, augment=config.augment,
        warp=data_module.Warp(config.rotate, config.zoom, config.translate, config.elastic, config.elastic_sigma),
        channels_last=config.channels_last, world=world)
    part = distributed.share(len(data.val), world)  # each rank evaluates its share; the sums are added
    trainer.val_batches = data_module.Batches(
        data_module.Split(data.val.images[part], data.val.labels[part]), metrics.eval_batch_size(device),
        mean=data.mean, std=data.std, channels_last=config.channels_last)
    trainer.steps_per_epoch = len(trainer.train_batches)
    trainer.steps = Steps(config, len(data.train), trainer.steps_per_epoch, trainer.shuffle_generator, world)
    trainer.model = model_module.from_config(resolved)
    trainer.scaler = torch.amp.GradScaler(device.type, enabled=trainer.amp is torch.float16)
    trainer.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    # Several processes add up their shares' losses, then scale to the global batch's mean.
    trainer.criterion_sum = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing, reduction="sum")
    trainer.callbacks = [callback_registry.build(spec) for spec in resolved.callbacks] + trainer.extra_callbacks
    trainer.callback_names = [f"callback '{spec}' (from {callback_registry.get(spec.name).source})"
                           for spec in resolved.callbacks] + [type(c).__name__ for c in trainer.extra_callbacks]
    trainer.provenance = resolved.provenance()
    trainer.outputs = declared_outputs(trainer.callbacks, trainer.callback_names)


def build_model(trainer: Any) -> None:
    """The model on its device, wrapped for several processes and compiled if asked; its average;
    the optimizer and the schedule."""
    config, world = trainer.config, trainer.world
    trainer.model.to(device=trainer.device, memory_format=trainer.steps.memory_format)
    train_forward = trainer.model
    if world.several:
        if config.sync_bn:
            distributed.globalise_batchnorm(trainer.model)
        from torch.nn.parallel import DistributedDataParallel

        train_forward = DistributedDataParallel(
            trainer.model, device_ids=[trainer.device.index] if trainer.device.type == "cuda" else None)
    trainer.forward = torch.compile(train_forward) if config.compile else train_forward
    trainer.average = WeightAverage(trainer.model, config.ema) if config.ema > 0 else None
    trainer.evaluated = trainer.average.model if trainer.average is not None else trainer.model
    # Evaluation needs no gradient exchange: the plain model, on this rank's share of the images.
    trainer.eval_forward = trainer.evaluated if world.several or trainer.average is not None else trainer.forward
    trainer.optimizer = optimizers.build(trainer.resolved.optimizer, trainer.model.parameters(), lr=config.lr)
    trainer.scheduler = schedulers.build(trainer.resolved.schedule, trainer.optimizer, lr=config.lr,
                                      epochs=config.epochs, steps_per_epoch=trainer.steps_per_epoch)


def declared_outputs(callbacks: list[Any], names: list[str]) -> list[str]:
    """The files and folders the callbacks say they write in the run directory (`Callback.outputs`)."""
    declared_names: set[str] = set()
    for callback, name in zip(callbacks, names):
        declared = getattr(callback, "outputs", None)
        for output in declared() if callable(declared) else ():
            problem = rundir.output_problem(output)
            if problem:
                raise PluginError(f"{name} declares an output mnistres will not clear: {problem}")
            declared_names.add(str(output))
    return sorted(declared_names)
