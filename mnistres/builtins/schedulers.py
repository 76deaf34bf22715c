"""Built-in learning-rate schedules.

A factory receives the optimizer, the run's base `lr`, `epochs` and `steps_per_epoch`,
plus its own options, and returns a torch LR scheduler that the trainer steps after
every training step (so schedules are smooth within an epoch, not staircase by epoch,
unless they mean to be).
"""

import math

from mnistres.registry import Option, schedulers


@schedulers.register("constant", help="the same lr throughout; the report's baseline")
def constant(optimizer, *, lr, epochs, steps_per_epoch):
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@schedulers.register(
    "step",
    help="multiply lr by gamma every step_size epochs",
    options={"step_size": Option(3, low=1, high=100_000), "gamma": Option(0.1, low=0.0, low_open=True)},
)
def step(optimizer, *, lr, epochs, steps_per_epoch, step_size, gamma):
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: gamma ** ((s // steps_per_epoch) // step_size)
    )


@schedulers.register(
    "cosine",
    help="linear warm-up for warmup_epochs, then cosine decay from lr to min_lr",
    options={"warmup_epochs": Option(0.0, low=0.0, high=100_000.0), "min_lr": Option(0.0, low=0.0)},
)
def cosine(optimizer, *, lr, epochs, steps_per_epoch, warmup_epochs, min_lr):
    import torch

    total = max(1, epochs * steps_per_epoch)
    warmup = min(total, int(round(warmup_epochs * steps_per_epoch)))
    floor = min_lr / lr if lr > 0 else 0.0

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@schedulers.register(
    "onecycle",
    help="one-cycle policy: warm up to lr (the peak) over pct_start, then anneal to lr/(div_factor*final_div_factor); "
    "an optimizer's momentum (Adam's beta1) goes the other way, max_momentum -> base_momentum -> max_momentum, "
    "in place of its own setting (cycle_momentum=false keeps that)",
    options={"pct_start": Option(0.3, low=0.0, high=1.0, low_open=True, high_open=True),
             "div_factor": Option(25.0, low=0.0, low_open=True), "final_div_factor": Option(1e4, low=0.0, low_open=True),
             "cycle_momentum": True,
             "base_momentum": Option(0.85, low=0.0, high=1.0, high_open=True),
             "max_momentum": Option(0.95, low=0.0, high=1.0, high_open=True)},
)
def onecycle(optimizer, *, lr, epochs, steps_per_epoch, pct_start, div_factor, final_div_factor, cycle_momentum,
             base_momentum, max_momentum):
    import torch

    defaults = optimizer.defaults
    # SGD without momentum stays without: cycling would give it momentum it was not asked to have.
    has_momentum = "betas" in defaults or defaults.get("momentum", 0.0) > 0
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=lr,
        total_steps=max(1, epochs * steps_per_epoch),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum=bool(cycle_momentum and has_momentum),
        base_momentum=base_momentum,
        max_momentum=max_momentum,
    )
