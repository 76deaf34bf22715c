"""The public API of plugins that take part in a run or a sweep: callbacks (the `Callback` base class and
`TrainerState`, what a hook may read) and sweep executors (the `Executor` base class and `PointTask`,
what an executor is handed for each point it runs), and datasets (`DatasetFiles`, what a dataset is).

A leaf module (it imports nothing from mnistres, and not torch), so that the trainer, the sweep, the
built-ins and third-party plugins all import it without importing each other:

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol


class TrainerState(Protocol):
    """What a callback's hooks receive: the running trainer, as far as a callback may use it.

    Everything here may be read; only `stop_reason` (and `stop_status`) is meant to be set (and `logs`, the dict that
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
    stop_status: str  # with stop_reason: "completed" (the default), or "pruned" when a search (`mnistres tune`)
    #             stops the run as not promising: a result that is not resumed
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


class PointTask(Protocol):
    """One start of one sweep point, as the sweep hands it to an executor. The point's process (or the
    executor's own code) trains it by `python -m mnistres.worker FILE --attempt ATTEMPT`, or by
    `mnistres.worker.run_point`; either leaves the outcome in `run_dir`, which is all the sweep reads back."""

    name: str  # the point's name: its run directory's and its log's
    run_dir: Path  # where the point's run writes; its summary.json records the outcome under `attempt`
    log: Path  # logs/<point>.log in the sweep directory: the point's output goes there
    attempt: str  # this start's name, recorded with its outcome (`--attempt`)
    plugins: list[str]  # plugins the point's process must load (`--plugin`, each)
    threads: int  # the CPU threads the point's `threads: 0` stands for (the sweep's own; `--threads`)
    resuming: bool  # an earlier start stopped part-way: the run goes on from its last epoch (append to the log)
    device: str  # the device the point's config names
    resolved: Any  # the point's config, every name resolved (`mnistres.resolve.Resolved`), for in-process runs

    def point_file(self, *, device: Optional[str] = None, absolute: bool = False) -> Path:
        """Write logs/<point>.yaml, the config `python -m mnistres.worker` runs (with `device` instead of the
        point's, if given; with `absolute`, out_dir and data_dir made absolute, for a process started in
        another folder or on another machine that sees the same paths); its path."""
        ...

    def started(self, where: str) -> None:
        """Say where the point runs, in words ("cpu (2 threads) on host"): the sweep shows it as running."""
        ...

    def report(self, *, epoch: Optional[int] = None, fraction: Optional[float] = None,
               val_acc: Optional[float] = None) -> None:
        """Progress of a point run in the sweep's own process (others' is read from their run directory)."""
        ...


class Executor:
    """Where a sweep's points run. Register a factory with `mnistres.registry.executors`; it is called with
    the sweep's `jobs` (points at once), `devices` (one per slot, may be empty) and `threads`, and the options
    of the user's spec (`--executor NAME:key=value`). The sweep drives it: `open` (before anything is
    written), then `start` for each point while fewer than `capacity` run, `done` polled for each, `finished`
    once done, `stop` on Ctrl-C, `close` at the end. Progress and outcomes are read from the points' run
    directories, never from the executor."""

    capacity: int = 1  # points started at once (the sweep starts the next as one finishes)
    place: str = "its executor"  # where a point runs, in words, until its run directory says more
    gone_hint: str = "run the same sweep again to go on"  # said after `lost` reports the executor gone

    def open(self) -> None:
        """Connect or start what the points need; raise a `mnistres.errors.ConfigError` if it cannot."""

    def start(self, task: PointTask) -> Any:
        """Start the point; a handle for the other methods. Call `task.started(where)` once it is known where
        the point runs (else the sweep learns it from the run directory). May run the point to its end
        before returning (an in-process executor reports its progress with `task.report`)."""
        raise NotImplementedError

    def done(self, handle: Any) -> bool:
        """Whether the point's task has ended (its outcome, if it recorded one, is in its run directory)."""
        raise NotImplementedError

    def finished(self, handle: Any) -> str:
        """Called once the task is done (or stopped): why the executor gave up on it, if it did ("" if not),
        and a chance to free what it held."""
        return ""

    def stop(self) -> None:
        """Ask every task it started that still runs to stop (each point records itself as interrupted),
        and wait for them."""

    def lost(self) -> str:
        """"" while the executor works; once it is gone (a scheduler lost), what was lost, in words."""
        return ""

    def close(self) -> None:
        """Release what `open` took; called whatever happened."""


@dataclass(frozen=True)
class DatasetFiles:
    """What a dataset is to mnistres (what a `mnistres.registry.datasets` factory returns): 28x28 grayscale
    images of 10 classes in the four IDX files MNIST is published as (`train-images-idx3-ubyte` and the
    others, gzipped or not), in DATA_DIR/<folder>/raw/."""

    folder: str  # the folder under the data directory, as torchvision names it: "MNIST"
    mean: float  # the pixel mean (of value/255) over the training images
    std: float  # and their standard deviation
    download: str = ""  # the torchvision.datasets class that downloads the files; "": none (files given by hand)
