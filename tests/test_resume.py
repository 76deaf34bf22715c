"""Interrupt and resume: a resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnistres.callbacks import Callback
from mnistres.train.checkpoint import load
from mnistres.cli import app
from mnistres.config import RunConfig
from mnistres.errors import WriteError
from mnistres.trainer import resume_config, train

runner = CliRunner()
TIMING = ("seconds", "images_per_s", "eval_seconds")


class InterruptAt(Callback):
    """Ctrl-C in the middle of an epoch, as a user would press it."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_batch_end(self, trainer, step):
        if trainer.epoch == self.epoch and step == self.step:
            raise KeyboardInterrupt


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.parametrize("augment", [False, True])
def test_resumed_run_equals_the_uninterrupted_one(data_dir, tmp_path, augment):
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=3, batch_size=32, width=8,
                       blocks=1, precise_bn=64, threads=1, augment=augment, lr=0.01, out_dir=str(tmp_path))
    whole = train(config.replace(name="whole"))
    with pytest.raises(KeyboardInterrupt):
        train(config.replace(name="cut"), extra_callbacks=[InterruptAt(epoch=2, step=4)])
    cut = tmp_path / "cut"
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    assert load(cut / "last.pt")["epoch"] == 1  # the last consistent point: the end of epoch 1

    resumed = train(resume_config(cut), resume=True)
    assert resumed.status == "completed" and resumed.summary["epochs_completed"] == 3
    assert metrics(cut) == metrics(whole.run_dir)
    a, b = load(whole.run_dir / "last.pt"), load(cut / "last.pt")
    assert a["global_step"] == b["global_step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert resumed.summary["confusion_matrix"] == whole.summary["confusion_matrix"]


def test_resume_through_the_cli_and_its_mistakes(fast):
    result = runner.invoke(app, ["train", *fast, "--name", "r"])
    assert result.exit_code == 0
    again = runner.invoke(app, ["train", *fast, "--name", "r"])
    assert again.exit_code == 2 and "already holds a completed run" in again.output and "--overwrite" in again.output
    done = runner.invoke(app, ["train", "--resume", "runs/r"])
    assert done.exit_code == 2 and "has already completed: nothing to resume" in done.output
    changed = runner.invoke(app, ["train", "--resume", "runs/r", "--lr", "0.5"])
    assert changed.exit_code == 2 and "only device, threads, data_dir, download may change (not lr)" in changed.output
    mixed = runner.invoke(app, ["train", "--resume", "runs/r", "--set", "epochs=5"])
    assert mixed.exit_code == 2 and "leave out --config, --preset, --set" in mixed.output
    missing = runner.invoke(app, ["train", "--resume", "runs/none"])
    assert missing.exit_code == 2 and "holds no run to resume" in missing.output


def test_sigterm_stops_like_ctrl_c_and_resume_finishes(fast, tmp_path):
    options = [a for i, a in enumerate(fast) if a != "--epochs" and fast[i - 1] != "--epochs"]
    args = ["train", *options, "--epochs", "40", "--name", "t"]
    process = subprocess.Popen([sys.executable, "-m", "mnistres", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "MNISTRES_DEBUG": ""})
    checkpoint_file = tmp_path / "runs" / "t" / "last.pt"  # written just after metrics.jsonl: wait for both
    deadline = time.monotonic() + 120
    while not checkpoint_file.is_file():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Interrupted: `mnistres train --resume runs/t` continues it" in output and "Traceback" not in output
    summary = json.loads((tmp_path / "runs" / "t" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    refused = subprocess.run([sys.executable, "-m", "mnistres", *args], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2 and "mnistres train --resume runs/t" in refused.stderr
    resumed = subprocess.run([sys.executable, "-m", "mnistres", "train", "--resume", "runs/t"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((tmp_path / "runs" / "t" / "summary.json").read_text())["epochs_completed"] == 40


def test_a_failed_save_leaves_the_previous_checkpoint_and_the_run_resumes(data_dir, tmp_path, monkeypatch):
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=3, width=8, blocks=1,
                       precise_bn=64, threads=1, lr=0.01, out_dir=str(tmp_path), name="full")
    real_write, calls = Path.write_bytes, []

    def disk_full_on_second_checkpoint(path, data):
        if path.name.startswith(".last.pt."):
            calls.append(path)
            if len(calls) == 2:
                real_write(path, bytes(data)[:1000])  # half a checkpoint, then the disk is full
                raise OSError(28, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full_on_second_checkpoint)
    with pytest.raises(WriteError, match=r"cannot write .*last.pt: No space left on device; the run is marked "
                                         r"failed: `mnistres train --resume .*` continues it"):
        train(config)
    monkeypatch.setattr(Path, "write_bytes", real_write)
    run = tmp_path / "full"
    assert load(run / "last.pt")["epoch"] == 1  # the previous checkpoint, intact
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left on device" in summary["message"]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.jsonl",
                                                     "summary.json"]  # no temporary file left behind
    resumed = train(resume_config(run), resume=True)
    assert resumed.status == "completed" and resumed.summary["epochs_completed"] == 3


class BlowUpFrom(Callback):
    """From the given epoch on, a learning rate no network survives."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_begin(self, trainer, epoch):
        if epoch == self.epoch:
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1e12


def test_divergence_stops_within_the_epoch_and_keeps_the_best_checkpoint(data_dir):
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=4, width=8, blocks=1,
                       precise_bn=64, threads=1, lr=0.01, optimizer="sgd", out_dir="runs", name="boom")
    result = train(config, extra_callbacks=[BlowUpFrom(epoch=2)])
    assert result.status == "diverged"
    where = result.summary["diverged_at"]
    assert where["epoch"] == 2 and 1 <= where["step"] <= 10  # 320 images / 32: caught within the epoch
    assert result.summary["epochs_completed"] == 1
    evaluated = runner.invoke(app, ["eval", "runs/boom/best.pt", "--data-dir", str(data_dir), "--device", "cpu",
                                    "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["accuracy"] == pytest.approx(result.history[0]["val_acc"])


def test_a_run_stored_before_a_setting_existed_still_resumes(data_dir, tmp_path):
    from mnistres.runs import rundir
    from mnistres.config import RunConfig as Defaults

    assert all(getattr(Defaults(), key) == value for key, value in rundir.ADDED_SETTINGS.items())
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=2, batch_size=64, width=8,
                       blocks=1, precise_bn=0, threads=1, out_dir=str(tmp_path), name="old")
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=[InterruptAt(epoch=2, step=1)])
    run = tmp_path / "old"
    # As an older mnistres wrote it: no sync_bn in config.yaml or in the checkpoint's config.
    (run / "config.yaml").write_text("".join(line for line in (run / "config.yaml").read_text().splitlines(True)
                                             if not line.startswith("sync_bn")))
    document = load(run / "last.pt")
    del document["config"]["sync_bn"]
    torch.save(document, run / "last.pt")
    assert train(resume_config(run), resume=True).status == "completed"


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_a_signal_another_thread_receives_still_waits_for_the_end_of_a_deferred_block():
    """The kernel may hand SIGTERM to any of torch's threads; the summary written in a deferred block
    must still be finished before the interrupt (it once was cut short: a run stopped just after its
    last epoch kept saying `running`)."""
    import threading

    from mnistres.core.interrupts import deferred, sigterm_as_interrupt

    reached_end = False
    with sigterm_as_interrupt():
        other = threading.Thread(target=time.sleep, args=(0.5,))
        other.start()
        with pytest.raises(KeyboardInterrupt):
            with deferred():
                signal.pthread_kill(other.ident, signal.SIGTERM)
                for _ in range(2000):
                    time.sleep(0)  # chances for a handler to run here, which it must not
                reached_end = True
        other.join()
    assert reached_end
