"""mnistres-extras: one entry of each kind, written against the public plugin API only.

Importing this module registers:

- optimizer ``lion``        sign-based momentum optimizer (Chen et al., 2023), not in torch
- activation ``squareplus`` (x + sqrt(x^2 + b)) / 2, a smooth ReLU (Barron, 2021)
- scheduler ``warmup_linear`` linear warm-up, then linear decay to zero
- callback ``batch_csv``    every N steps: epoch, step, loss and lr into <run dir>/batches.csv

Each factory receives what its kind receives (see mnistres's "Writing a plugin") plus the
options it declares, with the user's values or the defaults given here.
"""

from __future__ import annotations

import csv
from typing import Any

import torch
from torch import nn

from mnistres.api import Callback
from mnistres.errors import ConfigError, MnistresError
from mnistres.registry import Option, activations, callbacks, optimizers, schedulers

__version__ = "0.1.0"


class Lion(torch.optim.Optimizer):
    """Lion: the update is the sign of an interpolation between momentum and gradient.

    update = sign(beta1 * m + (1 - beta1) * g);  p -= lr * (update + weight_decay * p)
    m = beta2 * m + (1 - beta2) * g
    Every coordinate moves by exactly lr, so lr is usually 3-10x smaller than Adam's.
    """

    def __init__(self, params: Any, lr: float, betas: tuple[float, float], weight_decay: float) -> None:
        if lr <= 0 or not all(0.0 <= b < 1.0 for b in betas) or weight_decay < 0:
            raise ConfigError(f"lion needs lr > 0, 0 <= beta < 1 and weight_decay >= 0 (got {lr}, {betas}, {weight_decay})")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                momentum = state["exp_avg"]
                param.mul_(1 - group["lr"] * group["weight_decay"])
                update = momentum.mul(beta1).add_(param.grad, alpha=1 - beta1).sign_()
                param.add_(update, alpha=-group["lr"])
                momentum.mul_(beta2).add_(param.grad, alpha=1 - beta2)
        return loss


@optimizers.register(
    "lion",
    help="Lion (sign of interpolated momentum; Chen et al. 2023); try lr 1e-4, about a tenth of Adam's",
    options={"beta1": Option(0.9, low=0.0, high=1.0, high_open=True), "beta2": Option(0.99, low=0.0, high=1.0, high_open=True),
             "weight_decay": Option(0.0, low=0.0)},
)
def lion(params, *, lr, beta1, beta2, weight_decay):
    return Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)


class Squareplus(nn.Module):
    def __init__(self, b: float) -> None:
        super().__init__()
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x + torch.sqrt(x * x + self.b))

    def extra_repr(self) -> str:
        return f"b={self.b}"


@activations.register("squareplus", help="(x + sqrt(x^2 + b)) / 2: a smooth ReLU without exp (Barron 2021)",
                      options={"b": Option(4.0, low=0.0)})
def squareplus(*, b):
    return Squareplus(b)


@schedulers.register(
    "warmup_linear",
    help="lr rises linearly from 0 over warmup_epochs, then falls linearly to 0 at the end",
    options={"warmup_epochs": Option(0.5, low=0.0, high=100_000.0)},
)
def warmup_linear(optimizer, *, lr, epochs, steps_per_epoch, warmup_epochs):
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, max(0, round(warmup_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / (total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@callbacks.register(
    "batch_csv",
    help="every `every` steps, write epoch, step, loss and lr to <run dir>/batches.csv",
    options={"every": Option(10, low=1)},
)
class BatchCSV(Callback):
    FILE = "batches.csv"
    HEADER = ["epoch", "step", "global_step", "loss", "lr"]

    def __init__(self, *, every: int) -> None:
        self.every = every
        self._file: Any = None
        self._writer: Any = None

    def outputs(self) -> tuple[str, ...]:
        return (self.FILE,)  # --overwrite removes it with the run's own files

    def on_train_begin(self, trainer: Any) -> None:
        if not trainer.world.main:  # under torchrun every process runs the hooks; one writes
            return
        # A resumed run keeps the rows of the epochs it resumes after (`trainer.history`) and adds to them;
        # rows of the epoch that was cut short are dropped (it is trained again).
        keep = self._kept_bytes(trainer, len(trainer.history)) if trainer.history else 0
        self._file = trainer.open_run_file(self.FILE, "a")
        self._file.truncate(keep)
        self._writer = csv.writer(self._file)
        if keep == 0:
            self._writer.writerow(self.HEADER)

    def _kept_bytes(self, trainer: Any, epochs: int) -> int:
        """How many bytes of the earlier batches.csv hold its header and the rows of epochs 1..`epochs`."""
        try:
            earlier = trainer.open_run_file(self.FILE, "r")
        except MnistresError:  # none (it may have been deleted): start it again
            return 0
        kept = 0
        with earlier:
            for number, line in enumerate(earlier):
                epoch = line.split(",", 1)[0]
                if number == 0 and epoch != self.HEADER[0]:
                    return 0  # not a file this callback wrote
                if number > 0 and not (epoch.isdigit() and int(epoch) <= epochs and line.endswith("\n")):
                    break
                kept += len(line.encode("utf-8"))
        return kept

    def on_batch_end(self, trainer: Any, step: int) -> None:
        if self._writer is not None and trainer.global_step % self.every == 0:  # reading the loss waits for the device
            lr = trainer.optimizer.param_groups[0]["lr"]
            self._writer.writerow([trainer.epoch, step, trainer.global_step, f"{trainer.batch_loss.item():.6g}",
                                   f"{lr:.6g}"])

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.flush()

    def on_train_end(self, trainer: Any, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
