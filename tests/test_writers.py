"""Results are never lost: one writer per run directory, crashes in the middle of a write, and
places that cannot be written (a file in the way, a folder nobody may write in, a full disk)."""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnistres.train import checkpoint
from mnistres.cli import app

runner = CliRunner()
ON_LINUX = sys.platform.startswith("linux")


def mnistres(*args: str, cwd: Path, limit_bytes: int | None = None, **options) -> subprocess.Popen:
    """`python -m mnistres ARGS` as a child process; with `limit_bytes`, no file it writes may grow beyond
    that size (RLIMIT_FSIZE, with SIGXFSZ ignored): the kernel's own "disk full" for one process."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen([sys.executable, "-m", "mnistres", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "MNISTRES_DEBUG": ""},
                            preexec_fn=limit if limit_bytes else None, **options)


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --- one writer per run directory --------------------------------------------------------------


def test_two_runs_started_together_into_one_directory_one_is_refused(fast, tmp_path):
    args = ["train", *fast, "--epochs", "4", "--name", "race"]
    first, second = mnistres(*args, cwd=tmp_path), mnistres(*args, cwd=tmp_path)
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    refusal = one_line(next(err for code, _, err in outcomes if code == 2))
    assert "is being written by process" in refusal or "already holds a completed run" in refusal, refusal
    summary = json.loads((tmp_path / "runs" / "race" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 4
    assert hidden_files(tmp_path / "runs" / "race") == []  # the lock is gone with its writer


def test_a_run_being_written_refuses_a_second_writer_and_resume(fast, tmp_path):
    writer = mnistres("train", *fast, "--epochs", "200", "--name", "busy", cwd=tmp_path)
    run = tmp_path / "runs" / "busy"
    deadline = time.monotonic() + 120
    while not (run / "last.pt").is_file():
        assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()
        time.sleep(0.05)
    try:
        for args in (["train", *fast, "--name", "busy", "--overwrite"], ["train", "--resume", str(run)]):
            stamp = (run / "config.yaml").stat().st_mtime_ns  # written once, at the start: a second writer would redo it
            refused = subprocess.run([sys.executable, "-m", "mnistres", *args], cwd=tmp_path, capture_output=True,
                                     text=True, timeout=120)
            assert refused.returncode == 2, refused.stderr
            line = one_line(refused.stderr)
            assert f"is being written by process {writer.pid} on {socket.gethostname()}" in line, line
            assert (run / "config.yaml").stat().st_mtime_ns == stamp
            # (the first writer's own temporary files, of a write in progress, aside)
            assert {p.name for p in run.iterdir() if not p.name.endswith(".tmp")} <= {
                ".lock", "config.yaml", "metrics.jsonl", "last.pt", "best.pt", "summary.json"}
            running = json.loads((run / "summary.json").read_text())  # the first writer's, saying it runs
            assert (running["status"], running["pid"], running["host"]) == ("running", writer.pid, socket.gethostname())
    finally:
        writer.send_signal(signal.SIGTERM)
        writer.communicate(timeout=120)
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


def test_a_stale_lock_is_taken_over_and_one_from_another_host_is_reported(fast, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = tmp_path / "runs" / "stale"
    run.mkdir(parents=True)
    (run / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "started": 0}))
    result = runner.invoke(app, ["train", *fast, "--name", "stale"])
    assert result.exit_code == 0, result.output
    assert hidden_files(run) == []

    elsewhere = tmp_path / "runs" / "shared"
    elsewhere.mkdir()
    (elsewhere / ".lock").write_text(json.dumps({"host": "gpu-node-7", "pid": 4242, "started": time.time()}))
    result = runner.invoke(app, ["train", *fast, "--name", "shared"])
    assert result.exit_code == 2
    assert "locked by process 4242 on gpu-node-7" in result.output and "another machine" in result.output
    assert f"delete {Path('runs/shared/.lock')} and try again" in one_line(result.output)
    assert (elsewhere / ".lock").is_file() and sorted(p.name for p in elsewhere.iterdir()) == [".lock"]


def test_a_second_identical_sweep_is_refused_while_the_first_runs(fast, tmp_path):
    options = [a for i, a in enumerate(fast) if a != "--epochs" and fast[i - 1] != "--epochs"]
    args = ["sweep", "lr", "0.01", *options, "--epochs", "200", "--no-report"]
    first = mnistres(*args, cwd=tmp_path)
    root = tmp_path / "runs" / "lr-sweep"
    deadline = time.monotonic() + 120
    while not (root / "lr=0.01,seed=0" / "last.pt").is_file():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    try:
        second = subprocess.run([sys.executable, "-m", "mnistres", *args], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"{Path('runs/lr-sweep')} is being written by process {first.pid}" in second.stderr
        assert "(mnistres sweep lr 0.01" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)


# --- crashes in the middle of a write ----------------------------------------------------------


KILL_DURING_BEST = '''
import os, shutil, signal
_copy = shutil.copyfile

def copyfile(source, target, *args, **kwargs):
    if str(source).endswith("last.pt"):  # the trainer copies last.pt to best.pt's temporary file
        with open(target, "wb") as half:
            half.write(b"the first bytes of best.pt")
        os.kill(os.getpid(), signal.SIGKILL)
    return _copy(source, target, *args, **kwargs)

shutil.copyfile = copyfile
'''


def test_kill_9_while_best_pt_is_written_then_resume(fast, tmp_path):
    plugin = tmp_path / "kill_during_best.py"
    plugin.write_text(KILL_DURING_BEST)
    killed = mnistres("train", *fast, "--epochs", "3", "--name", "k", "--plugin", str(plugin), cwd=tmp_path)
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    run = tmp_path / "runs" / "k"
    assert not (run / "best.pt").exists() and any(name.startswith(".best.pt.") for name in hidden_files(run))

    resumed = subprocess.run([sys.executable, "-m", "mnistres", "train", "--resume", str(run)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert checkpoint.load(run / "best.pt")["epoch"] == summary["best"]["epoch"]
    assert f"at epoch {summary['best']['epoch']}" in resumed.stdout
    assert hidden_files(run) == []  # temporary files of the killed writes, and the dead writer's lock


# --- places that cannot be written ---------------------------------------------------------------


def a_file(path: Path) -> Path:
    path.write_text("x")
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: a_file(tmp / "taken"), "taken (on the way to it) is a file, not a folder"),
    (lambda tmp: a_file(tmp / "taken") / "runs", "taken (on the way to it) is a file"),
    (lambda tmp: tmp / ("n" * 300), "this filesystem allows"),
    pytest.param(lambda tmp: Path("/sys/mnistres-test"), "Permission denied",
                 marks=pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")),
])
def test_an_unwritable_place_is_one_line_before_any_data_is_read(fast, tmp_path, make, fragment):
    out_dir = make(tmp_path)
    missing_data = [a if a != fast[1] else str(tmp_path / "no-data-here") for a in fast]
    for command in (["train", *missing_data], ["sweep", "lr", "0.01", *missing_data]):
        result = runner.invoke(app, [*command, "--out-dir", str(out_dir)])
        assert result.exit_code == 2, result.output
        assert fragment in one_line(result.output) and "not found" not in result.output  # checked before the data
    assert not (tmp_path / "no-data-here").exists()


@pytest.mark.skipif(not ON_LINUX, reason="RLIMIT_FSIZE behaves this way on Linux")
def test_a_full_disk_mid_run_is_one_line_and_the_run_says_failed(fast, tmp_path):
    # Every file this process writes may reach 32 KB: config, metrics and summary fit, a checkpoint does not.
    full = mnistres("train", *fast, "--name", "full", cwd=tmp_path, limit_bytes=32 * 1024)
    out, err = full.communicate(timeout=300)
    assert full.returncode == 2, out + err
    line = one_line(err)
    run = tmp_path / "runs" / "full"
    assert f"cannot write {Path('runs/full/last.pt')}: File too large" in line and "marked failed" in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "File too large" in summary["message"]
    assert hidden_files(run) == [] and not (run / "last.pt").exists()


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, data_dir):
    from mnistres.config import RunConfig
    from mnistres.core.display import console
    from mnistres.trainer import train

    root = tmp_path_factory.mktemp("export")
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=1, width=8, blocks=1,
                       precise_bn=64, threads=1, out_dir=str(root), name="small")
    train(config, console=console(file=io.StringIO()))
    return root / "small" / "best.pt"


@pytest.mark.parametrize("target, fragment", [
    (lambda tmp: tmp / "folder.pt2", "is a folder"),
    (lambda tmp: tmp / "file.txt" / "model.pt2", "is a file, not a folder"),
    pytest.param(lambda tmp: Path("/sys/model.pt2"), "Permission denied",
                 marks=pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")),
])
def test_export_to_a_place_that_cannot_be_written(small_checkpoint, tmp_path, target, fragment):
    (tmp_path / "folder.pt2").mkdir()
    (tmp_path / "file.txt").write_text("x")
    result = runner.invoke(app, ["export", str(small_checkpoint), "-o", str(target(tmp_path))])
    assert result.exit_code == 2, result.output
    assert fragment in one_line(result.output)


@pytest.mark.skipif(not ON_LINUX, reason="RLIMIT_FSIZE behaves this way on Linux")
@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_export_on_a_full_disk_is_one_line_not_an_abort(small_checkpoint, tmp_path, suffix):
    pytest.importorskip("onnxscript") if suffix == ".onnx" else None
    target = tmp_path / f"model{suffix}"
    export = mnistres("export", str(small_checkpoint), "-o", str(target), cwd=tmp_path, limit_bytes=8 * 1024)
    out, err = export.communicate(timeout=300)
    assert export.returncode == 2, (export.returncode, out, err[-2000:])  # before: SIGABRT from the writer
    assert f"cannot write {target}: File too large" in one_line(err)
    assert not target.exists() and hidden_files(tmp_path) == []
