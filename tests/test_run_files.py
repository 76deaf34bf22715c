"""What mnistres writes in a run or sweep directory: never through a link or into a FIFO, and --overwrite
clears everything an earlier run wrote there (its callbacks' files too) and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnistres.api import Callback
from mnistres.cli import app
from mnistres.config import RunConfig
from mnistres.trainer import train

runner = CliRunner()
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="links and FIFOs as POSIX has them")


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return victim


@POSIX_ONLY
def test_a_lock_that_is_a_link_is_refused_and_its_target_untouched(fast, tmp_path):
    victim = _victim(tmp_path)
    Path("runs/lk").mkdir(parents=True)
    os.symlink(victim, "runs/lk/.lock")
    result = runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "lk"])
    assert result.exit_code == 2, result.output
    assert "runs/lk/.lock: it is a symbolic link" in result.stderr and "Traceback" not in result.output
    assert victim.read_text() == "precious\n"
    assert not Path("runs/lk/summary.json").exists()


@POSIX_ONLY
@pytest.mark.parametrize("make, what", [(os.mkfifo, "a FIFO"), (os.mkdir, "a folder")])
def test_a_lock_that_is_a_fifo_or_a_folder_is_one_line_not_a_hang(fast, make, what):
    """A FIFO used to hang train, sweep and runs for ever; a folder was a traceback. Each command runs
    in a child process with a time limit, so a hang fails the test instead of stalling the suite."""
    Path("runs/lk").mkdir(parents=True)
    make("runs/lk/.lock")
    for args in (["train", *fast, "--epochs", "1", "--name", "lk"], ["runs", "runs"]):
        done = subprocess.run([sys.executable, "-m", "mnistres", *args], capture_output=True, text=True, timeout=120)
        if args[0] == "runs":
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == 2, done.stderr
            assert f"runs/lk/.lock: it is {what}" in done.stderr and "Traceback" not in done.stderr


@POSIX_ONLY
def test_a_sweep_log_replaced_by_a_link_is_refused_before_any_point_runs(fast, tmp_path):
    victim = _victim(tmp_path)
    first = runner.invoke(app, ["sweep", "lr", "0.1", "0.01", *fast, "--epochs", "1", "--name", "sw"])
    assert first.exit_code == 0, first.output
    log = Path("runs/sw/logs/lr=0.1,seed=0.log")
    log.unlink()
    os.symlink(victim, log)
    again = runner.invoke(app, ["sweep", "lr", "0.1", "0.01", *fast, "--epochs", "1", "--name", "sw", "--overwrite"])
    assert again.exit_code == 2, again.output
    assert "lr=0.1,seed=0.log: it is a symbolic link" in again.stderr
    assert victim.read_text() == "precious\n"


class WritesFiles(Callback):
    """A callback with a file and a folder of its own in the run directory."""

    def outputs(self):
        return ("notes.txt", "plots")

    def on_train_begin(self, trainer):
        with trainer.open_run_file("notes.txt") as notes:
            notes.write("written\n")
        (Path(trainer.run_dir) / "plots").mkdir(exist_ok=True)
        (Path(trainer.run_dir) / "plots" / "a.png").write_bytes(b"png")


def _config(data_dir: Path, **changes) -> RunConfig:
    settings = dict(data_dir=str(data_dir), download=False, device="cpu", epochs=1, batch_size=32, width=8,
                    blocks=1, precise_bn=0, threads=1, name="ow")
    return RunConfig(**{**settings, **changes})


def test_overwrite_clears_what_the_earlier_runs_callbacks_wrote_and_nothing_else(data_dir):
    first = train(_config(data_dir), extra_callbacks=[WritesFiles()])
    assert json.loads((first.run_dir / "summary.json").read_text())["outputs"] == ["notes.txt", "plots"]
    (first.run_dir / "mine.txt").write_text("the user's own file")
    # The new run has none of those callbacks: the earlier run's summary says what to clear.
    second = train(_config(data_dir, lr=0.002), overwrite=True)
    assert second.status == "completed"
    left = sorted(p.name for p in second.run_dir.iterdir())
    assert "notes.txt" not in left and "plots" not in left
    assert "mine.txt" in left  # not the run's: kept


def test_a_callback_declaring_an_output_outside_the_run_directory_is_refused(data_dir):
    from mnistres.errors import PluginError

    class Escapes(Callback):
        def outputs(self):
            return ("../elsewhere",)

    with pytest.raises(PluginError, match="will not clear"):
        train(_config(data_dir), extra_callbacks=[Escapes()])


@POSIX_ONLY
def test_open_run_file_refuses_a_link(data_dir, tmp_path):
    from mnistres.errors import WriteError

    victim = _victim(tmp_path)

    class Writes(Callback):
        def on_train_begin(self, trainer):
            os.symlink(victim, Path(trainer.run_dir) / "mine.csv")
            trainer.open_run_file("mine.csv")

    with pytest.raises(WriteError, match="symbolic link"):
        train(_config(data_dir), extra_callbacks=[Writes()])
    assert victim.read_text() == "precious\n"


def test_early_stopping_resumed_stops_where_the_uninterrupted_run_stops(data_dir):
    """Its patience counts the epochs before the interruption: it used to start afresh on resume."""
    from mnistres.trainer import resume_config

    class InterruptAfter(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 3:
                raise KeyboardInterrupt

    # Nothing improves by 0.5: patience 3 stops the run after epoch 4 (the first epoch sets the best).
    config = _config(data_dir, epochs=8, lr=1e-12, callbacks=("early_stopping:monitor=train_loss,patience=3,min_delta=0.5",))
    whole = train(config.replace(name="whole"))
    assert whole.summary["epochs_completed"] == 4 and whole.message.startswith("early stopping")
    with pytest.raises(KeyboardInterrupt):
        train(config.replace(name="cut"), extra_callbacks=[InterruptAfter()])
    resumed = train(resume_config(whole.run_dir.parent / "cut"), resume=True)
    assert resumed.summary["epochs_completed"] == 4 and resumed.message == whole.message


def test_the_lock_names_a_sweep_points_process_as_the_worker_not_as_a_command(monkeypatch):
    """A point's lock said `mnistres POINT.yaml --attempt ...`, which reads like a command a user types."""
    from mnistres.core import lock

    monkeypatch.setattr(sys, "argv", ["/site/mnistres/worker.py", "logs/p.yaml", "--attempt", "a1"])
    assert lock.command_line() == "python -m mnistres.worker logs/p.yaml --attempt a1"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/mnistres", "train", "--epochs", "2"])
    assert lock.command_line() == "mnistres train --epochs 2"
