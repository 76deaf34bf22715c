"""When what mnistres prints loses its reader (`mnistres train ... | head`, `| less` quit early), a run stops
as an interrupted one (saved, resumable), not as a failure, and commands that only print end quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mnistres.core import display, interrupts
from mnistres.config import RunConfig
from mnistres.core.interrupts import Interrupted
from mnistres.trainer import resume_config, train


class _ClosedPipe:
    """A file whose reader has gone: every write fails as a pipe's does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass


def test_a_console_whose_reader_left_raises_output_closed_once_then_stays_quiet():
    console = display.console(file=_ClosedPipe())
    with pytest.raises(interrupts.OutputClosed, match="its output was closed"):
        console.print("epoch 1/3")
    console.print("epoch 2/3")  # nothing more is written, and nothing raised


def test_in_a_run_on_several_processes_it_only_raises_the_flag():
    # Every process must stop at the same point (the end of an epoch), so there the console only raises
    # the flag they all look at; outside the block it raises again.
    with interrupts.signals_as_flag() as flag:
        display.console(file=_ClosedPipe()).print("epoch 1/3")
        assert flag.raised
    with pytest.raises(interrupts.OutputClosed):
        display.console(file=_ClosedPipe()).print("epoch 1/3")


def _mnistres(args: list[str], cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnistres", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "MNISTRES_DEBUG": ""})


def test_a_run_whose_output_is_closed_stops_interrupted_and_resumes(fast, tmp_path):
    options = [a for i, a in enumerate(fast) if a != "--epochs" and fast[i - 1] != "--epochs"]
    process = _mnistres(["train", *options, "--epochs", "40", "--name", "t"], tmp_path)
    try:
        first = process.stdout.readline()  # the first epoch's line; then the reader goes, as `head -1` does
        assert first.startswith("epoch 1/40"), first
        process.stdout.close()
        errors = process.stderr.read()
        assert process.wait(timeout=120) == 130, errors
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Interrupted: its output was closed" in errors and "mnistres train --resume runs/t" in errors
    assert "Traceback" not in errors
    summary = json.loads((tmp_path / "runs" / "t" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "its output was closed" in summary["message"]
    # The epoch whose line found no reader was saved before the run stopped.
    assert 2 <= summary["epochs_completed"] < 40
    assert summary["message"].startswith(f"interrupted after epoch {summary['epochs_completed']}")
    resumed = subprocess.run([sys.executable, "-m", "mnistres", "train", "--resume", "runs/t"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((tmp_path / "runs" / "t" / "summary.json").read_text())["epochs_completed"] == 40


@pytest.mark.parametrize("args", [["plugins"], ["plugins", "--json"]])  # through Rich, and a plain write
def test_a_listing_whose_reader_left_ends_quietly_with_141(tmp_path, args):
    # `mnistres plugins | head -0`: the reader is gone before the first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.run([sys.executable, "-m", "mnistres", *args], cwd=tmp_path, stdout=write_end,
                                 stderr=subprocess.PIPE, text=True, timeout=120,
                                 env={**os.environ, "MNISTRES_DEBUG": ""})
    finally:
        os.close(write_end)
    assert process.returncode == 141, process.stderr
    assert process.stderr == ""


def _config(data_dir, tmp_path, epochs: int) -> RunConfig:
    return RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=epochs, width=8, blocks=1,
                     precise_bn=64, threads=1, lr=0.01, out_dir=str(tmp_path), name="r", callbacks=["progress"])


def test_output_closed_in_the_last_epoch_lets_the_run_complete(data_dir, tmp_path):
    # Nothing is left to save for later: the run completes (its mistakes too), and prints no more.
    result = train(_config(data_dir, tmp_path, 1), console=display.console(file=_ClosedPipe()))
    assert result.status == "completed" and (tmp_path / "r" / "mistakes.npz").is_file()
    with pytest.raises(Interrupted, match="its output was closed"):  # before the last epoch, it stops
        train(_config(data_dir, tmp_path, 2), console=display.console(file=_ClosedPipe()), overwrite=True)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_completed"] == 1


def test_a_run_stopped_after_its_last_epoch_was_saved_is_finished_by_resuming(data_dir, tmp_path):
    # Stopped between saving its last epoch and recording its end (a signal at that moment): resuming
    # trains nothing and records what the end records. It used to be refused as "already completed".
    run = tmp_path / "r"
    train(_config(data_dir, tmp_path, 1))
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    (run / "mistakes.npz").unlink()
    resumed = train(resume_config(run), resume=True)
    assert resumed.status == "completed" and resumed.summary["epochs_completed"] == 1
    assert (run / "mistakes.npz").is_file()
    assert resumed.summary["final"] == summary["final"]


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_whose_reader_left_exits_141_like_every_command(args, tmp_path):
    """`mnistres --help | head -1` exited 1 (Rich's console ends so on a broken pipe); the docs say 141 (docs/index.md)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        done = subprocess.run([sys.executable, "-m", "mnistres", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path, timeout=60, env={**os.environ, "COLUMNS": "100"})
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr
