"""The built-in callbacks: per-class accuracy, early stopping and the progress display.

They register exactly as a plugin's callbacks do, and see the trainer only through the public
API in `mnistres.api` (`Callback`, `TrainerState`), like any plugin's.
"""

from __future__ import annotations

import math
import time
from typing import Any

from mnistres.api import Callback, TrainerState
from mnistres.registry import Option, callbacks

__all__ = ["Callback", "EarlyStopping", "PerClassAccuracy", "Progress", "epoch_line"]  # Callback: for older plugins

# What early stopping can watch: the metrics every epoch logs (keys a plugin callback adds are not
# known before the first epoch, and a typo must not cost one).
MONITORABLE = ("val_acc", "val_loss", "train_acc", "train_loss", *(f"val_acc_class_{c}" for c in range(10)))


@callbacks.register(
    "per_class_accuracy",
    help="adds val_acc_class_0..9 (validation accuracy of each class) to every epoch's log",
)
class PerClassAccuracy(Callback):
    def on_epoch_end(self, trainer: TrainerState, epoch: int, logs: dict[str, Any]) -> None:
        from mnistres.train.metrics import class_metrics

        for row in class_metrics(trainer.val_confusion):
            logs[f"val_acc_class_{row['class']}"] = row["accuracy"]


@callbacks.register(
    "tune_trial",
    help="reports each epoch's held-out accuracy to its tune study, whose pruner may stop the run (mnistres tune "
         "adds it to every trial; the run directory, trial-NNNN, names the trial)",
)
def tune_trial() -> Callback:
    from mnistres.tune.pruning import TuneTrial

    return TuneTrial()


@callbacks.register(
    "early_stopping",
    help="stop when `monitor` has not improved by min_delta for `patience` epochs",
    options={"monitor": Option("val_acc", choices=MONITORABLE), "patience": Option(3, low=1, high=100_000),
             "min_delta": Option(0.0, low=0.0), "mode": Option("auto", choices=("auto", "min", "max"))},
)
class EarlyStopping(Callback):
    def __init__(self, *, monitor: str, patience: int, min_delta: float, mode: str) -> None:
        if mode == "auto":
            mode = "min" if "loss" in monitor else "max"
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, abs(min_delta), mode
        self.best: float | None = None
        self.waited = 0

    def on_train_begin(self, trainer: TrainerState) -> None:
        # A resumed run's earlier epochs count, so that it stops where an uninterrupted run would.
        self.best, self.waited = None, 0
        for logs in trainer.history:
            if self.monitor in logs:
                self._see(float(logs[self.monitor]))

    def on_epoch_end(self, trainer: TrainerState, epoch: int, logs: dict[str, Any]) -> None:
        from mnistres.errors import ConfigError

        if self.monitor not in logs:
            raise ConfigError(
                f"early_stopping monitors '{self.monitor}', which the epoch log lacks "
                f"(it has: {', '.join(logs)})"
            )
        if self._see(float(logs[self.monitor])):
            trainer.stop_reason = (
                f"early stopping: {self.monitor} did not improve on {self.best:.4f} for {self.patience} epochs"
            )

    def _see(self, value: float) -> bool:
        """Take one epoch's value; True once it has not improved for `patience` epochs."""
        improved = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
        if improved:
            self.best, self.waited = value, 0
            return False
        self.waited += 1
        return self.waited >= self.patience


@callbacks.register(
    "progress",
    help="a live bar per epoch in a terminal (loss, accuracy, images/s, ETA) and one line per epoch",
    options={"refresh_s": Option(0.25, low=0.0, high=3600.0)},
)
class Progress(Callback):
    """Reads device values at most every `refresh_s` seconds, so the bar costs almost nothing."""

    def __init__(self, *, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0
        self._started = 0.0

    def on_epoch_begin(self, trainer: TrainerState, epoch: int) -> None:
        console = trainer.console
        if not console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self._bar = Bar(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            "train", total=trainer.steps_per_epoch, epoch=f"{epoch}/{trainer.config.epochs}", stats=""
        )
        self._started = self._last = time.perf_counter()

    def on_batch_end(self, trainer: TrainerState, step: int) -> None:
        if self._bar is None:
            return
        now = time.perf_counter()
        if now - self._last < self.refresh_s and step < trainer.steps_per_epoch:
            self._bar.update(self._task, completed=step)
            return
        self._last = now
        loss, acc, seen = trainer.running_metrics()
        rate = seen / max(now - self._started, 1e-9)
        stats = f"loss {loss:.4f}  acc {acc:.4f}  {rate:,.0f} img/s"
        if step == trainer.steps_per_epoch:  # the bar is full, but the epoch ends with the evaluation
            stats += f"  evaluating on {len(trainer.data.val):,} {trainer.data.val_name} images..."
        self._bar.update(self._task, completed=step, stats=stats)
        if step == trainer.steps_per_epoch:
            self._bar.refresh()

    def on_epoch_end(self, trainer: TrainerState, epoch: int, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        trainer.console.print(epoch_line(logs, trainer.config.epochs), highlight=False, soft_wrap=True)

    def on_train_end(self, trainer: TrainerState, status: str) -> None:
        if self._bar is not None:  # interrupted or diverged mid-epoch
            self._bar.stop()
            self._bar = None


def epoch_line(logs: dict[str, Any], epochs: int) -> str:
    """One plain line per epoch, the same in a terminal and in a log file."""
    parts = [f"epoch {logs['epoch']}/{epochs}"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        value = logs.get(key)
        if isinstance(value, float) and math.isfinite(value):
            parts.append(f"{key} {value:.4f}")
    parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['seconds']:.1f}s")
    parts.append(f"{logs['images_per_s']:,.0f} img/s")
    return "  ".join(parts)
