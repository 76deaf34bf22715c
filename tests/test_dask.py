"""Sweeps on Dask: an embedded LocalCluster, a scheduler started apart, a worker that dies, Ctrl-C.

Kept small for 2 cores: two single-threaded workers, a tiny model, synthetic data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnistres.cli import app
from processes import processes_mentioning, start_sweep, status, wait_for

pytest.importorskip("distributed")

runner = CliRunner()


def numbers(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s", "eval_seconds")} for row in rows]


def without_epochs(fast: list[str]) -> list[str]:
    return [a for i, a in enumerate(fast) if a != "--epochs" and fast[i - 1] != "--epochs"]


def long_sweep(fast: list[str], tmp_path: Path) -> tuple[list[str], Path]:
    """A 1-epoch and a 40-epoch point on an embedded cluster of 2 workers; absolute paths, so that the
    points' processes can be found by their command lines."""
    args = ["epochs", "1", "40", "--executor", "dask", "--jobs", "2", *without_epochs(fast), "--no-report",
            "--out-dir", str(tmp_path / "runs")]
    return args, tmp_path / "runs" / "epochs-sweep"


def test_the_embedded_cluster_gives_the_local_executors_numbers(fast):
    common = ["lr", "0.01", "0.003", "--seeds", "2", *fast, "--no-report"]
    on_dask = runner.invoke(app, ["sweep", *common, "--executor", "dask", "--jobs", "2", "--name", "dask"])
    assert on_dask.exit_code == 0, on_dask.output
    assert "4 points: 4 completed" in on_dask.output and "on " in on_dask.output
    local = runner.invoke(app, ["sweep", *common, "--jobs", "1", "--name", "local"])
    assert local.exit_code == 0, local.output
    for point in ("lr=0.01,seed=0", "lr=0.01,seed=1", "lr=0.003,seed=0", "lr=0.003,seed=1"):
        assert numbers(Path("runs/dask") / point) == numbers(Path("runs/local") / point), point
        recorded = json.loads((Path("runs/dask") / point / "summary.json").read_text())
        assert recorded["attempt"] and recorded["host"]
    hosts = {p["name"]: p.get("host") for p in yaml.safe_load(Path("runs/dask/sweep.yaml").read_text())["points"]}
    assert set(hosts.values()) == {socket.gethostname()}, hosts


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes through /proc")
def test_ctrl_c_stops_the_dask_points_and_the_rerun_finishes_them(fast, tmp_path):
    args, root = long_sweep(fast, tmp_path)
    short, long = root / "epochs=1,seed=0", root / "epochs=40,seed=0"
    process = start_sweep(args, tmp_path)
    wait_for(lambda: status(short) == "completed" and (long / "last.pt").is_file(), process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 130, output
    assert "Traceback" not in output and status(long) == "interrupted"
    time.sleep(1)
    assert processes_mentioning(str(root / "logs")) == []  # no point's process outlives the sweep
    recorded = {p["name"]: p["status"] for p in yaml.safe_load((root / "sweep.yaml").read_text())["points"]}
    assert recorded == {"epochs=1,seed=0": "completed", "epochs=40,seed=0": "interrupted"}
    first_epoch = (long / "metrics.jsonl").read_text().splitlines()[0]
    again = subprocess.run([sys.executable, "-m", "mnistres", "sweep", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert status(long) == "completed" and (long / "metrics.jsonl").read_text().splitlines()[0] == first_epoch


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds processes through /proc")
def test_a_dask_worker_killed_mid_point_loses_nothing(fast, tmp_path):
    args, root = long_sweep(fast, tmp_path)
    long = root / "epochs=40,seed=0"
    process = start_sweep(args, tmp_path)
    wait_for(lambda: (long / "last.pt").is_file(), process)
    [point_process] = processes_mentioning(str(root / "logs" / "epochs=40,seed=0.yaml"))
    dask_worker = int((Path("/proc") / str(point_process) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(dask_worker, signal.SIGKILL)  # its point's process is told (SIGTERM) and records itself
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    summary = json.loads((long / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 40
    log = (root / "logs" / "epochs=40,seed=0.log").read_text()
    assert "Interrupted:" in log and "Resuming" in log and "(it stopped as interrupted)" in log  # not redone
    uninterrupted = runner.invoke(app, ["sweep", "epochs", "40", *without_epochs(fast), "--no-report", "--out-dir",
                                        str(tmp_path / "again"), "--jobs", "1"])
    assert uninterrupted.exit_code == 0, uninterrupted.output
    assert numbers(long) == numbers(tmp_path / "again" / "epochs-sweep" / "epochs=40,seed=0")
    assert processes_mentioning(str(root / "logs")) == []


def test_a_scheduler_and_workers_started_apart_run_the_sweep(fast, tmp_path):
    """The workers start in another folder than the sweep, which gives relative places (runs/): every
    place is made absolute before a point leaves the sweep (the points were written under the workers'
    folder, and each called failed)."""
    scheduler_file = tmp_path / "scheduler.json"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(2):
            started.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                 "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=elsewhere))
        relative_data = os.path.relpath(fast[fast.index("--data-dir") + 1])
        options = [relative_data if a == fast[fast.index("--data-dir") + 1] else a for a in fast]
        result = runner.invoke(app, ["sweep", "lr", "0.01", "0.003", "0.001", *options,
                                     "--executor", f"dask:scheduler_file={scheduler_file}"])
        assert result.exit_code == 0, result.output
        assert "3 points: 3 completed" in result.output and (Path("runs/lr-sweep/report.md")).is_file()
        assert not (elsewhere / "runs").exists()
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.parametrize("extra, fragment", [
    (["--scheduler-file", "missing.json"], "--scheduler-file missing.json: no such file"),
    (["--scheduler-file", "garbage.json"], "--scheduler-file garbage.json is not a Dask scheduler file"),
    (["--scheduler-file", "empty.json"], "--scheduler-file empty.json is not a Dask scheduler file"),
    (["--scheduler-file", "object.json"], "--scheduler-file object.json is not a Dask scheduler file"),
    (["--scheduler", "tcp://127.0.0.1:9", "--scheduler-file", "x.json"], "give --scheduler or --scheduler-file"),
    (["--devices", "cpu,cpu"], "--devices assigns devices to local child processes"),
    (["--executor", "dask:scheduler_file=missing.json"], "--scheduler-file missing.json: no such file"),
    (["--executor", "dask:scheduler=tcp://127.0.0.1:9", "--scheduler-file", "x.json"], "give --scheduler or --scheduler-file"),
    (["--executor", "dask:schedular=tcp://127.0.0.1:9"], "executor 'dask' has no option 'schedular'"),
])
def test_dask_mistakes_get_one_line_and_exit_2(fast, extra, fragment):
    # Files that exist but are no scheduler's: each was a traceback (an AssertionError deep in Dask).
    Path("garbage.json").write_text("garbage{")
    Path("empty.json").write_text("")
    Path("object.json").write_text("{}")
    result = runner.invoke(app, ["sweep", "lr", "0.01", *fast, "--executor", "dask", *extra])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not Path("runs/lr-sweep/sweep.yaml").exists()


def test_the_old_scheduler_options_are_the_dask_executors_options():
    from mnistres.sweep import plan as sweep

    assert sweep.executor_spec("dask", scheduler="tcp://h:8786") == sweep.executor_spec("dask:scheduler=tcp://h:8786")
    assert str(sweep.executor_spec("dask", scheduler_file="/s/f.json")) == "dask:scheduler_file=/s/f.json"
    assert str(sweep.executor_spec("local")) == "local"


def test_scheduler_options_need_the_dask_executor_and_dask_needs_its_extra(fast, monkeypatch):
    result = runner.invoke(app, ["sweep", "lr", "0.01", *fast, "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2 and "add --executor dask" in result.output
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    result = runner.invoke(app, ["sweep", "lr", "0.01", *fast, "--executor", "dask"])
    assert result.exit_code == 2 and 'pip install "mnistres[dask]"' in result.output
    assert not Path("runs/lr-sweep/sweep.yaml").exists()


def test_dask_points_compute_with_the_sweeps_thread_count(fast):
    """Dask's workers set OMP_NUM_THREADS=1: a point given `threads: 0` computed there with one thread
    where the sweep's own points use torch's default for the machine. The sweep now resolves the count
    once and hands it on; each epoch records what it ran with."""
    from mnistres.train import devices

    options = [a for i, a in enumerate(fast) if a != "--threads" and fast[i - 1] != "--threads"]
    result = runner.invoke(app, ["sweep", "lr", "0.01", *options, "--executor", "dask", "--jobs", "1", "--no-report"])
    assert result.exit_code == 0, result.output
    point = Path("runs/lr-sweep/lr=0.01,seed=0")
    expected = devices.default_threads()
    assert json.loads((point / "summary.json").read_text())["numerics"]["threads"] == expected
    rows = [json.loads(line) for line in (point / "metrics.jsonl").read_text().splitlines()]
    assert [row["threads"] for row in rows] == [expected] * len(rows)


def test_a_point_dask_gave_up_on_is_failed_with_that_reason(tmp_path):
    """A child stopped with its dying worker records itself as interrupted; once Dask stops retrying the
    task (KilledWorker), the point failed, and the sweep says why."""
    from mnistres.sweep import driver, plan as sweep
    from mnistres.runs import rundir
    from mnistres.config import RunConfig
    from mnistres.sweep.on_dask import DaskExecutor
    from mnistres.sweep.view import PointState

    plan = sweep.make_plan(RunConfig(out_dir=str(tmp_path), name="s", epochs=3), {"lr": [0.01]})
    state = PointState(plan.points[0])
    state.attempt = "a1"
    state.point.run_dir.mkdir(parents=True)
    rundir.write_summary(state.point.run_dir, {"status": "interrupted", "message": "interrupted during epoch 2",
                                               "attempt": "a1"})

    class GaveUp:  # what a Dask future looks like once the scheduler gave up on it
        status = "error"

        def done(self):
            return True

        def exception(self):
            return RuntimeError("Attempted to run task on 4 workers; all died")

    class View:
        def finished(self, state):
            pass

    executor = DaskExecutor(jobs=1)
    driver._finish(executor, state, GaveUp(), View(), stopping=False)
    assert state.status == "failed"
    assert state.message.startswith("Dask gave up on it: RuntimeError: Attempted to run task on 4 workers")
    assert "interrupted during epoch 2" in state.message
    state.status = "interrupted"
    driver._finish(executor, state, GaveUp(), View(), stopping=True)  # the sweep itself was stopping: interrupted, resumable
    assert state.status == "interrupted"


def test_a_scheduler_lost_mid_sweep_is_one_line_and_the_rerun_goes_on(fast, tmp_path):
    """Killing the scheduler printed pages of CommClosedError tracebacks, called points that never started
    failed, and the end table said running under "3 failed"."""
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    started = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        started.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
             "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        args = ["epochs", "30", "31", *without_epochs(fast), "--no-report", "--out-dir", str(tmp_path / "runs"),
                "--executor", "dask", "--scheduler-file", str(scheduler_file)]
        root = tmp_path / "runs" / "epochs-sweep"
        process = start_sweep(args, tmp_path)
        wait_for(lambda: any(root.glob("*/last.pt")), process)
        os.killpg(scheduler.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=180)
    finally:
        for each in started:
            try:
                os.killpg(each.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            each.wait()
    assert process.returncode == 2, output
    assert "Traceback" not in output and "CommClosedError" not in output
    assert output.count("Error: lost the Dask scheduler") == 1 and "1 not started (still pending)" in output, output
    recorded = {p["name"]: p["status"] for p in yaml.safe_load((root / "sweep.yaml").read_text())["points"]}
    assert sorted(recorded.values()) == ["interrupted", "pending"], recorded
    again = subprocess.run([sys.executable, "-m", "mnistres", "sweep", *args[:-4], "--jobs", "1"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    [cut] = [name for name, state in recorded.items() if state == "interrupted"]
    assert "Resuming" in (root / "logs" / f"{cut}.log").read_text()  # resumed, not redone
    assert {status(root / name) for name in recorded} == {"completed"}
