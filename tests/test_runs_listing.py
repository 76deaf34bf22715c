"""`mnistres runs`: every kind of run directory listed with the right status, filters, hints, JSON, mistakes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnistres.callbacks import Callback
from mnistres.cli import app
from mnistres.config import RunConfig
from mnistres.errors import PluginError
from mnistres.trainer import train

runner = CliRunner()


class StopAt(Callback):
    """Raises `error` at a step of an epoch: Ctrl-C, or a crash."""

    def __init__(self, epoch: int, error: BaseException) -> None:
        self.epoch, self.error = epoch, error

    def on_batch_end(self, trainer, step):
        if trainer.epoch == self.epoch and step == 2:
            raise self.error


class BlowUp(Callback):
    def on_epoch_begin(self, trainer, epoch):
        if epoch == 2:
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1e12


def _restamp(run: Path, **changes) -> None:
    summary = json.loads((run / "summary.json").read_text())
    summary.update(changes)
    (run / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def folder(data_dir) -> Path:
    """runs/ holding one run of each kind, started an hour apart (done oldest, running newest)."""
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=2, batch_size=32, width=8,
                       blocks=1, precise_bn=64, threads=1, lr=0.01, out_dir="runs")
    train(config.replace(name="done"))
    (Path("runs/done/tensorboard")).mkdir()  # a callback's own folder counts in the run's size
    (Path("runs/done/tensorboard/events")).write_bytes(b"\0" * 1000)
    with pytest.raises(KeyboardInterrupt):
        train(config.replace(name="cut"), extra_callbacks=[StopAt(2, KeyboardInterrupt())])
    with pytest.raises(PluginError):
        train(config.replace(name="broken"), extra_callbacks=[StopAt(2, RuntimeError("the disk caught fire"))])
    train(config.replace(name="boom", optimizer="sgd"), extra_callbacks=[BlowUp()])
    runs = Path("runs")
    shutil.copytree(runs / "done", runs / "killed")  # recorded as running, but its process is gone
    shutil.copytree(runs / "done", runs / "sweep" / "lr=0.1,seed=0")  # a point inside a sweep folder
    shutil.copytree(runs / "done", runs / "live")  # recorded as running by a live process (this one)
    (runs / "live" / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    (runs / "damaged").mkdir()
    (runs / "damaged" / "summary.json").write_text("{not json")
    order = ["done", "sweep/lr=0.1,seed=0", "broken", "cut", "boom", "killed", "damaged", "live"]
    for hour, name in enumerate(order):
        if name != "damaged":
            _restamp(runs / name, started=f"2026-01-01T{hour:02d}:00:00+00:00",
                     **({"status": "running"} if name in ("killed", "live") else {}))
    os.utime(runs / "damaged", (1767225600 + 6 * 3600,) * 2)  # its folder's time: 06:00 on that day
    return runs


def test_runs_lists_each_status_newest_first(folder):
    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    names = [run["name"] for run in listed["runs"]]
    assert names == ["live", "damaged", "killed", "boom", "cut", "broken", "sweep/lr=0.1,seed=0", "done"]
    status = {run["name"]: run["status"] for run in listed["runs"]}
    assert status == {"live": "running", "damaged": "unreadable", "killed": "interrupted", "boom": "diverged",
                      "cut": "interrupted", "broken": "failed", "sweep/lr=0.1,seed=0": "completed",
                      "done": "completed"}
    by_name = {run["name"]: run for run in listed["runs"]}
    assert (by_name["done"]["epochs_done"], by_name["done"]["epochs_planned"]) == (2, 2)
    assert (by_name["cut"]["epochs_done"], by_name["boom"]["epochs_done"], by_name["broken"]["epochs_done"]) == (1, 1, 1)
    done_history = [json.loads(line) for line in (folder / "done" / "metrics.jsonl").read_text().splitlines()]
    assert by_name["done"]["final_val_acc"] == done_history[-1]["val_acc"]
    assert by_name["done"]["best_val_acc"] == max(row["val_acc"] for row in done_history)
    assert by_name["done"]["bytes"] == sum(p.stat().st_size for p in (folder / "done").rglob("*") if p.is_file())
    assert by_name["done"]["bytes"] > 1000 + (folder / "done" / "last.pt").stat().st_size
    assert by_name["killed"]["note"] == "killed while running (its process is gone)"
    assert "mnistres train --resume runs/cut" in by_name["cut"]["hint"]
    assert "mnistres train --resume runs/killed" in by_name["killed"]["hint"]
    assert "the disk caught fire" in by_name["broken"]["note"] and "--resume runs/broken" in by_name["broken"]["hint"]
    assert by_name["done"]["hint"] == by_name["boom"]["hint"] == ""
    assert "not JSON" in by_name["damaged"]["note"]
    assert listed["settings"] == ["optimizer"]  # the one setting not the same in every run
    assert by_name["boom"]["settings"] == {"optimizer": "sgd"}


def test_runs_table_filter_and_hints(folder):
    result = runner.invoke(app, ["runs"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "8 runs under runs, newest first" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows][:3] == ["live", "damaged", "killed"]
    assert "2026-01-01 03:00" in result.output and "optimizer" in result.output

    only = runner.invoke(app, ["runs", "runs", "--status", "interrupted"], env={"COLUMNS": "250"})
    assert only.exit_code == 0
    rows = [line.split("│")[1].strip() for line in only.output.splitlines() if line.startswith("│")]
    assert rows == ["killed", "cut"]
    assert "• cut: " in only.output and "mnistres train --resume runs/cut" in " ".join(only.output.split())
    none = runner.invoke(app, ["runs", "runs/sweep", "--status", "failed"])
    assert none.exit_code == 0 and "No failed runs under runs/sweep." in none.output


@pytest.mark.parametrize("args, fragment", [
    (["runs", "runs", "--status", "finished"], "--status 'finished': expected one of completed, diverged"),
    (["runs", "nowhere"], "nowhere is not a folder"),
])
def test_runs_mistakes_are_one_line(args, fragment):
    Path("runs").mkdir()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and fragment in " ".join(result.output.split()), result.output


def test_runs_reads_no_checkpoint_and_imports_no_torch(folder):
    """Listing is quick because it opens only the small files: torch is never imported."""
    code = ("import sys\nfrom mnistres.cli import main\nsys.argv = ['mnistres', 'runs', '--json']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["runs"]) == 8


def test_a_piped_listing_keeps_every_cell_whole(data_dir):
    """Off a terminal (`mnistres runs | grep completed`) the table is as wide as its cells: none is cut to
    "comple…", however many settings differ; and the planned epochs are not a second `epochs` column."""
    import yaml

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=1, batch_size=32, width=8,
                       blocks=1, precise_bn=64, threads=1, out_dir="runs")
    train(config.replace(name="first"))
    changes = {"epochs": 3, "optimizer": "sgd:nesterov=true", "lr": 0.123456, "schedule": "onecycle",
               "label_smoothing": 0.15, "rotate": 12.5, "zoom": 0.125, "translate": 2.5, "weight_decay": 0.00025,
               "callbacks": ["per_class_accuracy", "progress", "early_stopping:patience=3"]}
    shutil.copytree("runs/first", "runs/second-with-a-long-name")
    settings = yaml.safe_load(Path("runs/second-with-a-long-name/config.yaml").read_text())
    Path("runs/second-with-a-long-name/config.yaml").write_text(yaml.safe_dump({**settings, **changes}, sort_keys=False))
    _restamp(Path("runs/second-with-a-long-name"), epochs_planned=3)  # as a 3-epoch run stopped after one says

    result = runner.invoke(app, ["runs"], env={"COLUMNS": None})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "run", "status", "epochs", "best val %", "final val %", "optimizer", "lr", "weight_decay", "schedule",
        "label_smoothing", "rotate", "zoom", "translate", "callbacks", "started (UTC)", "time", "size"]
    rows = {line.split("│")[1].strip(): line for line in lines if line.startswith("│")}
    assert set(rows) == {"first", "second-with-a-long-name"} and "…" not in result.output
    assert "│ completed │" in rows["first"] and "│    1/3 │" in rows["second-with-a-long-name"]
    assert "per_class_accuracy,progress,early_stopping:patience=3" in rows["second-with-a-long-name"]
