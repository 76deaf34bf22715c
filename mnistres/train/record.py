"""A run's record: the only writer of its run directory while it trains.

It begins the record (clears what an earlier run left, writes config.yaml and a `running` summary), adds
each epoch (metrics.jsonl, last.pt, and best.pt by the one rule for the best epoch), and ends it (the
summary; a completed run's mistakes). Under torchrun every process keeps the record's history and best
epoch, and only rank 0 writes: the rule lives here, once. The layout and file formats are `rundir`'s,
summary.json's schema `runsummary`'s, what a checkpoint holds `resume`'s.
"""

from __future__ import annotations

import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

from mnistres.core import atomic
from mnistres.runs import names, rundir
from mnistres.errors import ConfigError
from mnistres.core.lock import Lock
from mnistres.runs.summary import Summary


def place(config: Any, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Where the run goes, checked before any work: it can be created and written, and nobody is writing
    there; a new run's holds no earlier run (unless `overwrite`). A resumed run's is OUT_DIR/NAME."""
    if resume:
        run_dir = Path(config.out_dir) / str(config.name)
    else:
        run_dir = Path(config.out_dir) / (config.name or names.default_name(
            config.dataset, config.activation, config.optimizer, config.lr, config.batch_size))
    atomic.check_place(run_dir)
    if not resume and run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder")
    Lock(run_dir).check()
    if not resume and not overwrite:
        rundir.refuse_earlier_run(run_dir)
    return run_dir


def is_better(logs: Mapping[str, Any], best: Mapping[str, Any]) -> bool:
    """The one rule for the best epoch: the highest validation accuracy, the earliest on a tie."""
    return not best or logs["val_acc"] > best["val_acc"]


def best_of(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The best epoch of `history`, as summary.json's `best` holds it."""
    best: dict[str, Any] = {}
    for row in history:
        if is_better(row, best):
            best = _best_entry(row)
    return best


def _best_entry(logs: Mapping[str, Any]) -> dict[str, Any]:
    return {"epoch": logs["epoch"], "val_acc": logs["val_acc"], "val_loss": logs["val_loss"]}


class RunRecord:
    """The files of one run, written as it goes. `main`: this process writes (rank 0); the others keep
    the same history and best epoch, and write nothing."""

    def __init__(self, run_dir: Path, *, main: bool, attempt: str) -> None:
        self.run_dir, self.main, self.attempt = run_dir, main, attempt
        self.history: list[dict[str, Any]] = []  # the epochs so far (a resumed run's earlier ones too)
        self.best: dict[str, Any] = {}  # epoch, val_acc and val_loss of the best epoch so far

    def resume(self, done: int) -> None:
        """Take up the history up to `done`, the epoch last.pt holds; best.pt repaired if a crash cut it short."""
        from mnistres.train import resume

        self.history = resume.history_until(self.run_dir, done)
        self.best = best_of(self.history)
        if self.main and resume.best_needs_copy(self.run_dir, self.best, done):
            self._copy_to_best()

    def clear(self, *, new: bool, overwrite: bool, outputs: list[str]) -> None:
        """Before anything is written: remove what killed writes left, and with `overwrite` an earlier run's
        files and recorded outputs too. A new run checks again that no run finished here meanwhile."""
        if not self.main:
            return
        if new and not overwrite:
            rundir.refuse_earlier_run(self.run_dir)  # another writer may have finished a run here meanwhile
        rundir.clear(self.run_dir, earlier_run=overwrite, outputs=outputs)

    def begin(self, config: Any, *, outputs: list[str], started: datetime, device: str,
              processes: dict[str, Any]) -> None:
        """config.yaml, and a summary that says the run is running, and where: a summary still saying so
        later, with nobody holding the lock, is a run that was killed (resumable)."""
        if not self.main:
            return
        rundir.write_config(self.run_dir, config.to_dict())
        rundir.write_summary(self.run_dir, Summary(
            status="running", message="", epochs_completed=len(self.history), epochs_planned=config.epochs,
            started=started.isoformat(timespec="seconds"), device=device, distributed=processes,
            outputs=outputs, **rundir.writer(self.attempt)).to_dict())

    def add_epoch(self, logs: dict[str, Any], checkpoint: Any) -> None:
        """The epoch's line in metrics.jsonl, its checkpoint (`checkpoint()`: last.pt's content) as last.pt,
        and as best.pt when it is the best epoch so far."""
        from mnistres.train import checkpoint as checkpoint_file

        self.history.append(logs)
        if self.main:
            rundir.write_history(self.run_dir, self.history)
            checkpoint_file.save(self.run_dir / rundir.LAST, checkpoint())
        if is_better(logs, self.best):
            self.best = _best_entry(logs)
            if self.main:
                self._copy_to_best()

    def end(self, summary: Summary) -> None:
        if self.main:
            rundir.write_summary(self.run_dir, summary.to_dict())

    def add_mistakes(self, trainer: Any) -> None:
        """mistakes.npz: the final model's most confident mistakes on the validation images, for the
        report to show without loading a checkpoint. One more pass over all of them, on rank 0 alone
        (in evaluation mode no layer talks to the other processes)."""
        if not self.main:
            return
        from mnistres.train import data as data_module, metrics
        from mnistres.runs import mistakes

        data, config = trainer.data, trainer.config
        batches = data_module.Batches(data.val, metrics.eval_batch_size(trainer.device), mean=data.mean,
                                      std=data.std, channels_last=config.channels_last)
        probabilities = metrics.probabilities(trainer.eval_forward, batches, trainer.amp)
        source = f"the {config.dataset} test file" if data.val_name == "test" else \
            f"the held-out part of the {config.dataset} training file"
        val = data.val
        rundir.write_mistakes(self.run_dir, mistakes.select(
            probabilities.numpy(), val.labels.cpu().numpy(), val.images[:, 0].cpu().numpy(), source=source,
            positions=None if val.positions is None else val.positions.numpy()))

    def _copy_to_best(self) -> None:
        """best.pt becomes a copy of last.pt (the epoch just saved)."""
        with atomic.replacing(self.run_dir / rundir.BEST) as temp:
            shutil.copyfile(self.run_dir / rundir.LAST, temp)

    def summary(self, trainer: Any, status: str, message: str, started: datetime, wall: float,
                diverged_at: Optional[tuple[int, int, float]]) -> Summary:
        """summary.json at the run's end, from the record and the trainer's state."""
        from mnistres.train import devices, metrics

        history, config = self.history, trainer.config
        return Summary(
            status=status, message=message, epochs_completed=len(history), epochs_planned=config.epochs,
            final=history[-1] if history else {}, best=self.best, val_set=trainer.data.val_name,
            train_images=len(trainer.data.train), val_images=len(trainer.data.val),
            per_class=metrics.class_metrics(trainer.val_confusion) if trainer.val_confusion else [],
            confusion_matrix=trainer.val_confusion, parameters=sum(p.numel() for p in trainer.model.parameters()),
            train_seconds=sum(row["seconds"] for row in history), wall_seconds=wall,
            started=started.isoformat(timespec="seconds"), **rundir.writer(self.attempt),
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            device=devices.describe(trainer.device), versions=versions(),
            numerics=devices.numerics(trainer.device, trainer.amp, [row["threads"] for row in history if "threads" in row]),
            plugins=trainer.provenance,
            distributed={**trainer.world.describe(), "sync_bn": config.sync_bn}, outputs=trainer.outputs,
            diverged_at=None if diverged_at is None else dict(zip(("epoch", "step", "lr"), diverged_at)))


def versions() -> dict[str, str]:
    import torch
    import torchvision

    import mnistres

    return {"mnistres": mnistres.__version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}
