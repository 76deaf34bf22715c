"""mnistres-tensorboard: a `tensorboard` callback for mnistres runs.

Importing this module registers the callback ``tensorboard``. Per epoch it writes, with
``torch.utils.tensorboard``: train and validation loss and accuracy, the learning rate and the
validation accuracy of every class (scalars, step = epoch), and the confusion matrix as an image.
At the start it writes the run's config as a text table; at the end, the run's settings as
hyperparameters with its final and best validation accuracy (TensorBoard's HPARAMS tab compares
runs by them).

    mnistres train --callback tensorboard                       # into <run dir>/tensorboard
    mnistres train --callback tensorboard:log_dir=tb/my-run     # anywhere
    tensorboard --logdir runs                                   # every run's curves side by side

Only mnistres's public plugin API is used (`mnistres.registry`, `mnistres.api`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistres.api import Callback, TrainerState
from mnistres.registry import Option, callbacks

LOG_FOLDER = "tensorboard"  # inside the run directory, unless log_dir says otherwise
HPARAM_TYPES = (bool, int, float, str)  # what TensorBoard's HPARAMS tab takes as a setting's value


@callbacks.register(
    "tensorboard",
    help="TensorBoard event files: loss, accuracy, lr and per-class accuracy per epoch, the confusion "
         "matrix, the config and hparams",
    options={"log_dir": Option(""), "confusion": Option(True)},
)
class TensorBoard(Callback):
    """`log_dir`: where the event files go ("" : <run dir>/tensorboard); `confusion`: draw the matrix
    every epoch (an image each time; off to keep the files small)."""

    def __init__(self, *, log_dir: str, confusion: bool) -> None:
        self.log_dir, self.confusion = log_dir, confusion
        self.writer: Any = None
        self.history: list[dict[str, Any]] = []

    def outputs(self) -> tuple[str, ...]:
        return () if self.log_dir else (LOG_FOLDER,)  # in the run directory: --overwrite removes it

    def on_train_begin(self, trainer: TrainerState) -> None:
        if not trainer.world.main:  # under torchrun every process runs the hooks; one writes
            return
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(self.log_dir) if self.log_dir else Path(trainer.run_dir) / LOG_FOLDER
        resumed = len(trainer.history)  # epochs a resumed run had done: TensorBoard hides the earlier
        # attempt's events from the next epoch on (those of the epoch cut short), so no epoch shows twice
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=resumed + 1 if resumed else None)
        if resumed:
            return  # the config is there since the run began
        settings = trainer.config.to_dict()
        rows = "\n".join(f"| {key} | {_cell(value)} |" for key, value in settings.items())
        self.writer.add_text("config", f"| setting | value |\n|---|---|\n{rows}", global_step=0)

    def on_epoch_end(self, trainer: TrainerState, epoch: int, logs: dict[str, Any]) -> None:
        if self.writer is None:
            return
        self.history.append(dict(logs))
        for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_acc"),
                         ("accuracy/val", "val_acc"), ("lr", "lr")):
            if isinstance(logs.get(key), (int, float)):
                self.writer.add_scalar(tag, logs[key], global_step=epoch)
        matrix = trainer.val_confusion
        for label, row in enumerate(matrix or []):
            if sum(row):
                self.writer.add_scalar(f"val_acc_class/{label}", row[label] / sum(row), global_step=epoch)
        if self.confusion and matrix:
            self.writer.add_image("confusion", confusion_image(matrix, f"epoch {epoch}"), global_step=epoch,
                                  dataformats="HWC")
        self.writer.flush()

    def on_train_end(self, trainer: TrainerState, status: str) -> None:
        if self.writer is None:
            return
        accuracies = [row["val_acc"] for row in _whole_history(trainer, self.history)
                      if isinstance(row.get("val_acc"), (int, float))]
        if accuracies:
            settings = {key: value if isinstance(value, HPARAM_TYPES) else _cell(value)
                        for key, value in trainer.config.to_dict().items()}
            # run_name "." keeps the hparams beside the scalars, in this run's own folder.
            self.writer.add_hparams(settings, {"hparam/final_val_acc": accuracies[-1],
                                               "hparam/best_val_acc": max(accuracies)}, run_name=".")
        self.writer.close()
        self.writer = None


def _whole_history(trainer: TrainerState, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every epoch of the run, a resumed one's earlier epochs included (`trainer.history`), else the
    epochs this process saw."""
    return list(getattr(trainer, "history", None) or seen)


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "—"
    return "—" if value is None else str(value)


def confusion_image(matrix: list[list[int]], title: str) -> Any:
    """The confusion matrix drawn as an RGB array (H, W, 3), counts in the cells."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4.5), dpi=80, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.imshow(np.log1p(np.asarray(matrix, dtype=float)), cmap="Blues")
    for true, row in enumerate(matrix):
        for predicted, count in enumerate(row):
            if count:
                ax.text(predicted, true, str(count), ha="center", va="center", fontsize=7,
                        color="white" if true == predicted else "black")
    size = len(matrix)
    ax.set_xticks(range(size))
    ax.set_yticks(range(size))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
