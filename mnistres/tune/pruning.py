"""The `tune_trial` callback, inside a trial's run: each epoch's held-out accuracy reported to the trial in
its study, and the run stopped as `pruned` when the study's pruner says so. `mnistres tune` adds it to every
trial's callbacks; the trial's number is its run directory's (trial-NNNN), and the study is found through the
tune directory the run is in, so it works in whatever process runs the trial (a child process, a Dask worker on another machine that sees
the same folder)."""

from __future__ import annotations

from typing import Any

from mnistres.api import Callback, TrainerState
from mnistres.core.interrupts import deferred
from mnistres.errors import ConfigError
from mnistres.runs import rundir


class TuneTrial(Callback):
    def __init__(self) -> None:
        self.trial: Any = None

    def on_train_begin(self, trainer: TrainerState) -> None:
        if not trainer.world.main:
            return
        directory, number = trainer.run_dir.parent, rundir.trial_number(trainer.run_dir.name)
        if not rundir.is_tune(directory) or number is None:
            raise ConfigError(f"the tune_trial callback runs trials of `mnistres tune`: {directory} holds no "
                              f"{rundir.TUNE_FILE} beside a trial-NNNN run directory")
        from mnistres.tune import study as study_module

        record = rundir.read_tune(directory)
        with deferred():  # see on_epoch_end
            self.trial = study_module.trial_in(record, number)

    def on_epoch_end(self, trainer: TrainerState, epoch: int, logs: dict[str, Any]) -> None:
        if self.trial is None:
            return
        accuracy = float(logs["val_acc"])
        # A Ctrl-C (or the tune process gone) waits until the study is written: Optuna's journal lock, cut
        # by KeyboardInterrupt while it is released, raises FileNotFoundError in its place, and the trial
        # would be recorded as failed instead of interrupted.
        with deferred():
            self.trial.report(accuracy, epoch)
            # The last epoch ends the trial anyway: its value is a result, not a reason to prune.
            prune = epoch < trainer.config.epochs and self.trial.should_prune()
        if prune:
            trainer.stop_reason = (f"pruned after epoch {epoch}: held-out accuracy {accuracy:.4f} was behind the "
                                   f"study's other trials at that epoch")
            trainer.stop_status = "pruned"
