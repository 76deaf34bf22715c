"""The public API of callbacks: the `Callback` base class and `TrainerState`, what a hook may read.

A leaf module (it imports nothing from mnistres, and not torch), so that the trainer, the
built-in callbacks and third-party plugins all import it without importing each other:

    from mnistres.api import Callback, TrainerState
    from mnistres.registry import callbacks

    @callbacks.register("stop_at", help="stop once val_acc reaches `target`", options={"target": 0.99})
    class StopAt(Callback):
        def __init__(self, *, target: float) -> None:
            self.target = target

        def on_epoch_end(self, trainer: TrainerState, epoch: int, logs: dict) -> None:
            if logs["val_acc"] >= self.target:
                trainer.stop_reason = f"val_acc reached {self.target}"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class TrainerState(Protocol):
    """What a callback's hooks receive: the running trainer, as far as a callback may use it.

    Everything here may be read; only `stop_reason` is meant to be set (and `logs`, the dict that
    `on_epoch_end` receives, to be added to: its keys land in metrics.jsonl).
    """

    config: Any  # the run's RunConfig (frozen)
    console: Any  # the rich Console the run prints to (a log file in a sweep)
    run_dir: Path  # where the run's files go; a callback may add its own files there
    device: Any  # the torch.device the run computes on
    model: Any  # the torch.nn.Module being trained
    optimizer: Any  # its torch.optim.Optimizer
    scheduler: Any  # the learning-rate scheduler, stepped after every batch
    data: Any  # the prepared dataset: .train and .val (tensors on the device), .val_name ("test" or "held-out")
    epoch: int  # the current epoch, from 1
    global_step: int  # training steps since the run began, in batches of batch_size images (a low_res_batch_size step counts as several)
    steps_per_epoch: int  # batches in one epoch
    batch_loss: Any  # the last batch's loss, a device tensor: reading it waits for the device
    val_confusion: list[list[int]]  # the last evaluation's confusion matrix (rows: true class)
    stop_reason: str  # set to a sentence to end the run after the current epoch
    world: Any  # the run's processes (mnistres.distributed.World): .rank, .size, .main; under torchrun every
    #             process runs the hooks, and only the one with .main true should write files or print
    history: list[dict[str, Any]]  # the epochs logged so far, one dict each as in metrics.jsonl; at
    #             on_train_begin a resumed run's earlier epochs (empty for a new run): a callback that keeps
    #             state or files across epochs picks up from there, so a resumed run ends as an uninterrupted one

    def running_metrics(self) -> tuple[float, float, int]:
        """Loss, accuracy and images seen so far in this epoch (waits for the device)."""
        ...

    def open_run_file(self, name: str, mode: str = "w") -> Any:
        """A text file (UTF-8, newline="") in the run directory, opened with `mode` "r", "w" or "a"; a
        link, folder or FIFO in its place is refused, never followed. Declare what you write in
        `Callback.outputs`, so that --overwrite clears it."""
        ...


class Callback:
    """Base class of callbacks: every hook is a no-op; override the ones you need."""

    def outputs(self) -> tuple[str, ...]:
        """The files and folders this callback writes inside the run directory (names relative to it).
        --overwrite removes them with the run's own files, and they are recorded in summary.json, so a
        later --overwrite removes them even if it runs other callbacks."""
        return ()

    def on_train_begin(self, trainer: TrainerState) -> None: ...

    def on_epoch_begin(self, trainer: TrainerState, epoch: int) -> None: ...

    def on_batch_end(self, trainer: TrainerState, step: int) -> None:
        """After each optimizer step; `step` counts from 1 within the epoch.

        Per-batch values (`trainer.batch_loss`, running sums) are device tensors: reading
        them (`.item()`) waits for the device, so do it rarely.
        """

    def on_epoch_end(self, trainer: TrainerState, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: TrainerState, status: str) -> None: ...
