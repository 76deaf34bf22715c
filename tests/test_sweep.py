"""`mnistres sweep`: planning, running, keeping finished points, failures, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from mnistres.runs import names, rundir
from mnistres.sweep import plan as sweep
from mnistres.cli import app
from mnistres.config import RunConfig
from mnistres.errors import ConfigError, MnistresError
from mnistres.sweep.view import PointState
from processes import processes_mentioning, start_sweep, status, wait_for

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


# --- planning (no training) ----------------------------------------------------------------


def test_plan_is_the_product_of_axes_and_seeds():
    plan = sweep.make_plan(RunConfig(seed=5), sweep.merge_axes({}, [("optimizer", ["adam", "sgd:momentum=0.9"]),
                                                                    ("batch-size", ["32", "128"])]), seeds=2)
    assert plan.directory == Path("runs/optimizer-batch_size-sweep")
    assert plan.seeds == [5, 6]
    assert len(plan.points) == 2 * 2 * 2
    first = plan.points[0]
    assert first.name == "optimizer=adam,batch_size=32,seed=5"
    assert (first.config.optimizer, first.config.batch_size, first.config.seed) == ("adam", 32, 5)
    assert first.config.out_dir == str(plan.directory) and first.config.name == first.name
    assert {p.config.optimizer for p in plan.points} == {"adam", "sgd:momentum=0.9"}
    assert len({p.name for p in plan.points}) == len(plan.points)
    assert all(":" not in p.name for p in plan.points)  # folder names stay portable


def test_seed_as_an_axis_gives_each_point_its_seed():
    # It used to stop with a TypeError (the seed passed twice to the point's config).
    plan = sweep.make_plan(RunConfig(), sweep.merge_axes({}, [("lr", ["0.1", "0.01"]), ("seed", ["3", "5"])]))
    assert [(p.name, p.config.lr, p.config.seed) for p in plan.points] == [
        ("lr=0.1,seed=3", 0.1, 3), ("lr=0.1,seed=5", 0.1, 5), ("lr=0.01,seed=3", 0.01, 3), ("lr=0.01,seed=5", 0.01, 5)]
    assert plan.seeds == [3, 5]


def test_grid_values_keep_registry_options_together():
    assert sweep.parse_grid("optimizer=adam,sgd:momentum=0.9,nesterov=true") == (
        "optimizer", ["adam", "sgd:momentum=0.9,nesterov=true"])
    assert sweep.parse_grid("batch_size=32,128") == ("batch_size", ["32", "128"])
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        sweep.parse_grid("batch_size")


@pytest.mark.parametrize("axes, seeds, fragment", [
    ({"lr": ["fast"]}, 1, "lr='fast'"),
    ({"lr": ["0.1", "-1"]}, 1, "lr=-1.0 is out of range"),
    ({"lrr": ["0.1"]}, 1, "did you mean 'lr'"),
    ({"activation": ["relu", "sigmoidd"]}, 1, "did you mean 'sigmoid'"),
    ({"name": ["a", "b"]}, 1, "cannot be swept"),
    ({"lr": ["0.1", "0.10"]}, 1, "more than once"),
    ({"seed": ["1", "2"]}, 3, "--seeds cannot"),
    ({}, 1, "at least one axis"),
    ({"lr": ["0.1"]}, 0, "--seeds 0"),
    ({"lr": ["0.1"]}, 1001, "--seeds 1001: expected 1 to 1000"),
    ({"activation": ["relu", "RELU"]}, 1, "the same setting more than once (relu)"),
    ({"optimizer": ["sgd", "SGD:momentum=0"]}, 1, "the same setting more than once"),
    ({"callbacks": ["progress", "Progress:refresh_s=0.25"]}, 1, "the same setting more than once"),
])
def test_bad_axes_are_refused_before_anything_runs(axes, seeds, fragment):
    with pytest.raises(MnistresError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        sweep.make_plan(RunConfig(), axes, seeds)


def test_a_point_whose_value_clashes_with_another_setting_is_named():
    # 30 % held out leaves 42,000 training images, fewer than the 44,000 asked for; 10 % leaves enough.
    with pytest.raises(ConfigError) as caught:
        sweep.make_plan(RunConfig(train_size=44000), {"val_split": ["0.1", "0.3"]}, 1)
    assert str(caught.value).startswith("point val_split=0.3,seed=0: train_size=44,000 is more than the 42,000 "
                                        "training images available after holding out 18,000")
    with pytest.raises(ConfigError) as caught:  # a bad swept value is named by its own message already
        sweep.make_plan(RunConfig(), {"lr": ["-1"]}, 1)
    assert str(caught.value).startswith("lr=-1.0 is out of range")


@pytest.mark.parametrize("args, fragment", [
    (["lr", "0.1", "abc"], "lr='abc'"),
    (["lr"], "give the values"),
    (["colour", "red"], "unknown key 'colour'"),
    (["activation", "relu", "swishy"], "unknown activation 'swishy'"),
    (["lr", "0.1", "--grid", "lr=0.2"], "given twice"),
    (["lr", "0.1", "--grid", "epochs"], "--grid expects"),
    (["--epochs", "2"], "at least one axis"),
    (["batch_size", "64", "--train-size", "50"], "at most train_size"),
    (["lr", "0.1", "--devices", "cuda:0,cuda:1"], "not available"),
    (["lr", "0.1", "--jobs", "0"], "--jobs 0"),
    (["lr", "0.1", "--seeds", "0"], "--seeds 0: expected 1 to 1000"),  # before: ran one seed
    (["lr", "0.1", "--seeds", "5000"], "--seeds 5000: expected 1 to 1000"),
    (["lr", "0.1", "--jobs", "5000"], "--jobs 5000: expected 1 to 1024"),
    (["lr", "0.1", "0.2", "--grid", "seed=" + ",".join(map(str, range(6000)))], "12,000 points; at most 10,000"),
    (["activation", "relu", "RELU"], "lists the same setting more than once (relu)"),  # before: two "variants"
    (["lr", "0.1", "--data-dir", "nowhere"], "not found in nowhere"),
])
def test_sweep_mistakes_get_one_line_and_exit_2(fast, args, fragment):
    result = invoke("sweep", *fast, *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert not Path("runs").exists()


def test_yaml_axes_and_seeds(fast, tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("name: study\nepochs: 1\nseeds: 2\naxes:\n  activation: [relu, tanh]\n")
    data, axes, seeds = sweep.load_file(config)
    assert (data, axes, seeds) == ({"name": "study", "epochs": 1}, {"activation": ["relu", "tanh"]}, 2)
    result = invoke("train", "--config", str(config))
    assert result.exit_code == 2 and "mnistres sweep --config" in result.output
    config.write_text("axes: [lr]\n")
    with pytest.raises(ConfigError, match="axes must map"):
        sweep.load_file(config)
    config.write_text("epochs: 1\nbatch_size: [32, 64]\naxes:\n  lr: [0.1]\n")  # a list outside axes:
    result = invoke("sweep", "--config", str(config), *fast)
    assert result.exit_code == 2 and "batch_size is a list ([32, 64]), and a run takes one value" in result.output
    assert "put it under axes: (axes: {batch_size: [...]})" in result.output and not Path("runs").exists()


# --- running ---------------------------------------------------------------------------------


def test_a_sweep_of_seeds_alone_is_one_variant_named_by_its_seeds(fast):
    result = invoke("sweep", "seed", "3", "5", *fast, "--train-size", "64", "--epochs", "1", "--jobs", "1")
    assert result.exit_code == 0, result.output
    root = Path("runs/seed-sweep")
    assert [yaml.safe_load((root / name / "config.yaml").read_text())["seed"] for name in ("seed=3", "seed=5")] == [3, 5]
    # One variant over both runs, labelled by their seeds (it was labelled by its first run, "seed=3").
    assert "│ seeds 3, 5 " in result.output and "seed=3 " not in result.output
    assert "| seeds 3, 5 |" in (root / "report.md").read_text()


def test_two_values_two_seeds_then_rerun_trains_nothing(fast):
    result = invoke("sweep", "lr", "0.01", "0.003", "--seeds", "2", *fast)
    assert result.exit_code == 0, result.output
    root = Path("runs/lr-sweep")
    points = sorted(p.name for p in root.iterdir() if (p / "summary.json").is_file())
    assert points == ["lr=0.003,seed=0", "lr=0.003,seed=1", "lr=0.01,seed=0", "lr=0.01,seed=1"]
    for name in points:
        assert summary(root / name)["status"] == "completed"
        assert (root / "logs" / f"{name}.log").read_text().count("epoch ") >= 2
    assert "Sweep of 4 points" in result.output
    config = yaml.safe_load((root / "lr=0.003,seed=1" / "config.yaml").read_text())
    assert (config["lr"], config["seed"], config["epochs"], config["width"]) == (0.003, 1, 2, 8)
    plan = yaml.safe_load((root / "sweep.yaml").read_text())
    assert plan["axes"] == {"lr": [0.01, 0.003]} and plan["seeds"] == [0, 1] and len(plan["points"]) == 4
    # The end table: one row per value, over both seeds.
    assert "lr=0.01" in result.output and "lr=0.003" in result.output and "± " in result.output

    report = (root / "report.md").read_text()
    results = report.split("## Results")[1].split("##")[0]
    rows = [line for line in results.splitlines() if line.startswith("| lr=")]
    assert len(rows) == 2
    pictures = sorted(root.glob("*.png"))
    assert len(pictures) == 2
    for picture in pictures:
        with Image.open(picture) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
        assert f"]({picture.name})" in report

    stamps = {name: (root / name / "last.pt").stat().st_mtime_ns for name in points}
    again = invoke("sweep", "lr", "0.01", "0.003", "--seeds", "2", *fast)
    assert again.exit_code == 0, again.output
    assert "4 already finished, kept" in again.output and "4 kept from an earlier run" in again.output
    assert stamps == {name: (root / name / "last.pt").stat().st_mtime_ns for name in points}


def test_the_view_names_the_device_a_point_runs_on_not_auto(fast):
    from mnistres.train import devices

    on_auto = [a for i, a in enumerate(fast) if a != "--device" and fast[i - 1] != "--device"]
    result = invoke("sweep", "lr", "0.01", *on_auto, "--no-report", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert f"started on {devices.torch_device('auto')}" in result.output and "started on auto" not in result.output
    # In the words a point on Dask reports (from its summary): the threads and the machine too.
    import socket

    assert f"started on {devices.torch_device('auto')} (1 thread) on {socket.gethostname()}" in result.output
    assert "Sweep of 1 point into" in result.output and "1 point: 1 completed" in result.output


def test_changed_shared_settings_are_refused_not_mixed(fast):
    assert invoke("sweep", "lr", "0.01", *fast, "--no-report").exit_code == 0
    result = invoke("sweep", "lr", "0.01", *fast, "--epochs", "1")
    assert result.exit_code == 2
    assert "other shared settings (epochs: 2 -> 1)" in result.output and "--overwrite" in result.output
    assert invoke("sweep", "lr", "0.01", *fast, "--epochs", "1", "--overwrite", "--no-report").exit_code == 0
    assert summary(Path("runs/lr-sweep/lr=0.01,seed=0"))["epochs_completed"] == 1


def test_added_value_runs_only_the_new_point(fast):
    assert invoke("sweep", "lr", "0.01", *fast, "--no-report").exit_code == 0
    result = invoke("sweep", "lr", "0.01", "0.003", *fast, "--no-report")
    assert result.exit_code == 0, result.output
    assert "1 already finished, kept" in result.output
    assert summary(Path("runs/lr-sweep/lr=0.003,seed=0"))["status"] == "completed"


def test_failed_and_diverged_points_do_not_stop_the_sweep(fast):
    # 512 images per step cannot come from 320 training images: that point fails when it loads
    # its data; lr 1e6 with SGD diverges. The third point still runs.
    result = invoke("sweep", "lr", "1e6", "0.01", "--grid", "batch_size=512,32", "--optimizer", "sgd", *fast)
    assert result.exit_code == 1, result.output
    root = Path("runs/lr-batch_size-sweep")
    assert summary(root / "lr=1000000.0,batch_size=32,seed=0")["status"] == "diverged"
    assert summary(root / "lr=0.01,batch_size=32,seed=0")["status"] == "completed"
    # A point that fails before training records its outcome in its run directory, like any other.
    failed = summary(root / "lr=0.01,batch_size=512,seed=0")
    assert failed["status"] == "failed" and "larger than the 320 training images" in failed["message"]
    assert failed["epochs_completed"] == 0 and failed["attempt"]
    assert "batch_size=512 is larger than the 320 training images" in result.output
    recorded = {p["name"]: p for p in yaml.safe_load((root / "sweep.yaml").read_text())["points"]}
    assert recorded["lr=0.01,batch_size=512,seed=0"]["status"] == "failed"
    assert "larger than the 320 training images" in recorded["lr=0.01,batch_size=512,seed=0"]["message"]
    assert recorded["lr=1000000.0,batch_size=32,seed=0"]["status"] == "diverged"
    assert "2 completed" not in result.output and "1 completed, 1 diverged, 2 failed" in result.output
    report = (root / "report.md").read_text()
    assert "1 run diverged" in report and "lr=1000000.0,batch_size=32,seed=0 (epoch 1, step" in report
    assert "Not finished: lr=1000000.0,batch_size=512,seed=0 (failed: batch_size=512 is larger" in report


def test_parallel_jobs_write_logs_and_keep_the_sweeps_thread_count(fast):
    result = invoke("sweep", "activation", "relu", "tanh", "--jobs", "2", *fast, "--no-report")
    assert result.exit_code == 0, result.output
    # Each line carries the point's own place, so that a start and its end match however they interleave.
    for tag in ("[1/2] activation=relu,seed=0: ", "[2/2] activation=tanh,seed=0: "):
        assert f"{tag}started on cpu" in result.output and f"{tag}completed (val_acc " in result.output
    ends = [line for line in result.output.splitlines() if ": completed (" in line]
    assert [line.endswith(f"; {k} of 2 done)") for k, line in enumerate(ends, 1)] == [True, True], ends
    root = Path("runs/activation-sweep")
    for name in ("activation=relu,seed=0", "activation=tanh,seed=0"):
        assert summary(root / name)["status"] == "completed"
        assert "epoch 2/2" in (root / "logs" / f"{name}.log").read_text()
        assert yaml.safe_load((root / name / "config.yaml").read_text())["threads"] == 1  # --threads 1, as given
        assert summary(root / name)["numerics"]["threads"] == 1  # and what the run really used


def _numbers(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s", "eval_seconds")} for row in rows]


def test_a_points_numbers_do_not_depend_on_jobs(fast):
    # Before, --jobs 2 gave each point a share of the threads, and a point's numbers changed with --jobs.
    for jobs in ("1", "2"):
        result = invoke("sweep", "lr", "0.01", "0.003", "--jobs", jobs, "--name", f"jobs{jobs}", *fast, "--no-report")
        assert result.exit_code == 0, result.output
    for point in ("lr=0.01,seed=0", "lr=0.003,seed=0"):
        one, two = Path("runs/jobs1") / point, Path("runs/jobs2") / point
        assert _numbers(one) == _numbers(two)
        assert summary(one)["numerics"] == summary(two)["numerics"]


def test_jobs_never_lower_a_points_thread_count(fast, monkeypatch):
    from mnistres.train import devices

    without_threads = [a for i, a in enumerate(fast) if a != "--threads" and fast[i - 1] != "--threads"]
    cores = os.cpu_count() or 1
    two = invoke("sweep", "lr", "0.01", "--jobs", "2", "--threads", "2", "--name", "two", *without_threads, "--no-report")
    if cores >= 4:  # room for two points of two threads: each computes with the two threads asked for
        assert two.exit_code == 0, two.output
        assert summary(Path("runs/two/lr=0.01,seed=0"))["numerics"]["threads"] == 2
    else:  # before: silently one thread each
        assert two.exit_code == 2 and "would run 2 points with 2 CPU threads each" in two.output
    if 2 * devices.default_threads() <= cores:
        pytest.skip("torch's default thread count leaves room for two points here")
    result = invoke("sweep", "lr", "0.01", "0.003", "--jobs", "2", *without_threads)
    assert result.exit_code == 2 and "is not lowered to fit. Add --threads" in result.output
    assert not Path("runs").exists()
    changed = invoke("sweep", "lr", "0.01", *fast, "--no-report")
    assert changed.exit_code == 0
    again = invoke("sweep", "lr", "0.01", *without_threads, "--set", "threads=0", "--no-report")
    assert again.exit_code == 2 and "other shared settings (threads: 1 -> 0)" in again.output


def test_threads_zero_means_torchs_default_even_after_another_run_changed_it():
    import torch

    from mnistres.train import devices

    devices.set_threads(1)
    assert devices.describe(torch.device("cpu")) == "cpu (1 thread)"  # as summary.json and reports give it
    devices.set_threads(0)
    assert torch.get_num_threads() == devices.default_threads()


def test_a_sweep_into_a_folder_with_brackets_finishes_with_its_table_and_report(fast, tmp_path):
    out = tmp_path / "a[" / "b]"  # the folder /x/a[/b]: Rich would read [/b] as a closing tag
    result = invoke("sweep", "activation", "relu", "[bold]x", *fast, "--out-dir", str(out))
    assert result.exit_code == 2 and "unknown activation '[bold]x'" in result.output  # printed as typed
    result = invoke("sweep", "lr", "0.01", *fast, "--out-dir", str(out), "--name", "[bold]study")
    assert result.exit_code == 2 and "name='[bold]study'" in result.output
    result = invoke("sweep", "lr", "0.01", *fast, "--out-dir", str(out), "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert f"Sweep {out / 'lr-sweep'}" in result.output.replace("\n", "")
    assert (out / "lr-sweep" / "report.md").is_file()


def test_point_names_longer_than_a_filesystem_allows_are_shortened(fast):
    long_values = ["adam:beta1=0.9,beta2=0.999,eps=1e-08,weight_decay=0.0,amsgrad=false,fused=true",
                   "adam:beta1=0.8,beta2=0.999,eps=1e-08,weight_decay=0.0,amsgrad=false,fused=false"]
    schedules = ["cosine:warmup_epochs=0.5,min_lr=0.0001", "onecycle:pct_start=0.25,div_factor=10.0,final_div_factor=100.0"]
    full = max(len(f"optimizer={o},schedule={s},activation=leaky_relu:negative_slope=0.2,seed=0")
               for o in long_values for s in schedules)
    assert full > 200  # with the log's and temporary files' suffixes, beyond 255 bytes
    result = invoke("sweep", "--grid", f"optimizer={','.join(long_values)}", "--grid", f"schedule={','.join(schedules)}",
                    "--activation", "leaky_relu:negative_slope=0.2", *fast, "--epochs", "1", "--no-report")
    assert result.exit_code == 0, result.output
    root = Path("runs/optimizer-schedule-sweep")
    points = yaml.safe_load((root / "sweep.yaml").read_text())["points"]
    assert len(points) == 4 and len({p["name"] for p in points}) == 4
    for point in points:
        assert len(point["name"]) <= names.POINT_NAME_LIMIT and point["name"].endswith(",seed=0")
        config = yaml.safe_load((root / point["name"] / "config.yaml").read_text())
        assert (config["optimizer"], config["schedule"]) == (point["values"]["optimizer"], point["values"]["schedule"])
        assert summary(root / point["name"])["status"] == "completed"


# --- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs, stop", [("1", signal.SIGINT), ("2", signal.SIGINT), ("2", signal.SIGTERM)])
def test_ctrl_c_keeps_finished_points_and_the_rerun_does_the_rest(fast, tmp_path, jobs, stop):
    # Two points: one epoch (done in a second) and 40 (still running when Ctrl-C or SIGTERM comes).
    options = [a for i, a in enumerate(fast) if a != "--epochs" and fast[i - 1] != "--epochs"]
    # An absolute --out-dir, so that the children's command lines name this test's own folder.
    args = ["epochs", "1", "40", "--jobs", jobs, *options, "--no-report", "--out-dir", str(tmp_path / "runs")]
    root = tmp_path / "runs" / "epochs-sweep"
    short, long = root / "epochs=1,seed=0", root / "epochs=40,seed=0"
    process = start_sweep(args, tmp_path)
    wait_for(lambda: status(short) == "completed" and (long / "last.pt").is_file(), process)
    process.send_signal(stop)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Interrupted: finished points are kept; run the same sweep again" in output
    assert "Traceback" not in output
    if Path("/proc/self/cmdline").exists() and jobs == "2":  # no child left running: each was stopped and waited for
        assert processes_mentioning(str(root / "logs")) == []
    assert summary(short)["status"] == "completed"
    assert summary(long)["status"] == "interrupted"
    recorded = {p["name"]: p["status"] for p in yaml.safe_load((root / "sweep.yaml").read_text())["points"]}
    assert recorded == {"epochs=1,seed=0": "completed", "epochs=40,seed=0": "interrupted"}
    if stop == signal.SIGTERM:
        return  # going on after the stop is the same as after Ctrl-C, checked by the other cases
    stamp = (short / "last.pt").stat().st_mtime_ns
    first_epoch = (long / "metrics.jsonl").read_text().splitlines()[0]

    again = subprocess.run([sys.executable, "-m", "mnistres", "sweep", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already finished, kept" in again.stdout
    assert summary(long)["status"] == "completed" and summary(long)["epochs_completed"] == 40
    assert (short / "last.pt").stat().st_mtime_ns == stamp
    # The interrupted point was resumed, not redone: its first epoch (timings included) is the same line.
    assert (long / "metrics.jsonl").read_text().splitlines()[0] == first_epoch


def test_live_view_shows_each_point_state():
    from rich.console import Console

    from mnistres.sweep.view import SweepView

    plan = sweep.make_plan(RunConfig(epochs=5), {"lr": ["0.1", "0.01", "0.001"]})
    states = [PointState(point) for point in plan.points]
    states[0].status, states[0].kept, states[0].epoch, states[0].val_acc = "completed", True, 5, 0.9871
    states[1].status, states[1].epoch, states[1].fraction, states[1].val_acc = "running", 3, 0.5, 0.97
    states[1].started = time.time()
    console = Console(record=True, force_terminal=True, width=120)
    console.print(SweepView(states, console))
    rows = {line.split()[0]: line.split()[1:] for line in console.export_text().splitlines()[1:]}
    assert rows["lr=0.1,seed=0"] == ["completed", "(kept)", "5/5", "0.9871"]
    assert rows["lr=0.01,seed=0"] == ["running", "3/5", "50%", "0.9700", "0s"]
    assert rows["lr=0.001,seed=0"] == ["pending"]


def _long_point_training(fast: list[str], tmp_path: Path) -> tuple[list[str], Path, Path, subprocess.Popen]:
    """A sweep of a 1-epoch and a 40-epoch point in child processes, once the long one has a checkpoint:
    its arguments, its folder, the long point's run directory and the sweep's process."""
    options = [a for i, a in enumerate(fast) if a != "--epochs" and fast[i - 1] != "--epochs"]
    args = ["epochs", "1", "40", "--jobs", "2", *options, "--no-report", "--out-dir", str(tmp_path / "runs")]
    root = tmp_path / "runs" / "epochs-sweep"
    long = root / "epochs=40,seed=0"
    process = start_sweep(args, tmp_path)
    wait_for(lambda: (long / "last.pt").is_file(), process)
    return args, root, long, process


def test_a_killed_sweep_leaves_no_child_training(fast, tmp_path):
    """SIGKILL gives a sweep no chance to stop its children: they stop themselves, as interrupted."""
    args, root, long, process = _long_point_training(fast, tmp_path)
    assert processes_mentioning(str(root / "logs"))  # the long point's child is training
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while processes_mentioning(str(root / "logs")) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = processes_mentioning(str(root / "logs"))
    for pid in left:  # never leave one behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == []
    assert summary(long)["status"] == "interrupted"  # it saved its state on the way out: resumable (as tested above)


def test_a_child_whose_parent_is_already_gone_stops_at_once(tmp_path):
    from mnistres.core.interrupts import PARENT_ENV

    # A parent pid that is not this child's parent: the tie finds it gone and ends the process.
    child = subprocess.run([sys.executable, "-m", "mnistres", "--version"], capture_output=True, text=True,
                           env={**os.environ, PARENT_ENV: "1" if os.getpid() != 1 else "2"}, timeout=60)
    # It ends before doing anything, saying why in one line (issue 32: it used to end by SIGTERM, silently).
    assert child.returncode == 2 and "mnistres" not in child.stdout
    assert "names a process that is not this one's parent" in child.stderr
    untied = subprocess.run([sys.executable, "-m", "mnistres", "--version"], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != PARENT_ENV}, timeout=60)
    assert untied.returncode == 0 and "mnistres" in untied.stdout


def test_a_killed_point_is_failed_then_resumed_by_the_rerun(fast, tmp_path):
    """A point's process killed outright records nothing: the sweep goes on, says so, and the next run
    of the sweep resumes that point from its last completed epoch (its summary still says running)."""
    args, root, long, process = _long_point_training(fast, tmp_path)
    children = processes_mentioning(str(root / "logs" / "epochs=40,seed=0.yaml"))
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert "epochs=40,seed=0: its process ended without recording an outcome" in output
    assert status(long) == "running"  # what a killed run leaves: resumable, nobody holds its lock
    recorded = {p["name"]: p for p in yaml.safe_load((root / "sweep.yaml").read_text())["points"]}
    assert recorded["epochs=40,seed=0"]["status"] == "failed"
    first_epoch = (long / "metrics.jsonl").read_text().splitlines()[0]

    again = subprocess.run([sys.executable, "-m", "mnistres", "sweep", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary(long)["status"] == "completed" and summary(long)["epochs_completed"] == 40
    assert (long / "metrics.jsonl").read_text().splitlines()[0] == first_epoch  # resumed, not redone


def test_the_worker_records_its_outcome_in_the_run_directory(data_dir, tmp_path):
    from mnistres import worker
    from mnistres.runs import rundir

    point = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=1, width=8, blocks=1,
                      precise_bn=0, threads=1, out_dir=str(tmp_path / "runs"), name="p")
    point_file = tmp_path / "p.yaml"
    point_file.write_text(yaml.safe_dump(point.to_dict()))
    assert worker.main([str(point_file), "--attempt", "first"]) == 0
    assert rundir.outcome(tmp_path / "runs" / "p", "first") == ("completed", "")
    assert rundir.outcome(tmp_path / "runs" / "p", "another") is None  # an earlier attempt's outcome is not ours
    again = point.replace(name="q", batch_size=512, train_size=None)  # more images per step than there are
    point_file.write_text(yaml.safe_dump(again.to_dict()))
    assert worker.main([str(point_file), "--attempt", "second"]) == 0
    status, message = rundir.outcome(tmp_path / "runs" / "q", "second")
    assert status == "failed" and "larger than the 320 training images" in message
    point_file.write_text("epochs: [")
    assert worker.main([str(point_file), "--attempt", "third"]) == 2  # nothing to record it in


def test_a_point_interrupted_alone_makes_the_sweep_fail_and_says_how_to_go_on(fast, tmp_path):
    """A point's process stopped by SIGINT (not the sweep): the sweep used to end with exit 0, saying
    `2 points: 1 completed`, the interrupted point not named."""
    args, root, long, process = _long_point_training(fast, tmp_path)
    [child] = processes_mentioning(str(root / "logs" / "epochs=40,seed=0.yaml"))
    os.kill(child, signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert "2 points: 1 completed, 1 interrupted" in output
    assert "  epochs=40,seed=0: interrupted " in output
    assert "this continues the others: mnistres sweep epochs 1 40 --jobs 2" in output
    again = subprocess.run([sys.executable, "-m", "mnistres", "sweep", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "did not finish" not in again.stdout


def test_a_point_killed_after_its_last_epoch_was_saved_is_finished_not_trained_again(fast):
    """Its summary still says running (killed before the end was recorded): the rerun finishes it as
    `train --resume` does, without training; it used to train it again from epoch 1."""
    first = runner.invoke(app, ["sweep", "lr", "0.01", *fast, "--no-report"])
    assert first.exit_code == 0, first.output
    point = Path("runs/lr-sweep/lr=0.01,seed=0")
    trained = (point / "metrics.jsonl").read_text()
    killed = {**summary(point), "status": "running"}
    (point / "summary.json").write_text(json.dumps(killed))
    (point / "mistakes.npz").unlink()
    again = runner.invoke(app, ["sweep", "lr", "0.01", *fast, "--no-report"])
    assert again.exit_code == 0, again.output
    assert summary(point)["status"] == "completed" and (point / "mistakes.npz").is_file()
    assert (point / "metrics.jsonl").read_text() == trained  # timings included: no epoch ran again
    assert "Resuming" in Path("runs/lr-sweep/logs/lr=0.01,seed=0.log").read_text()


def test_a_sweep_file_of_the_most_points_a_sweep_may_have_reads_back(tmp_path):
    """sweep.yaml of ~9,300 points outgrew the YAML reader's 1 MB: the rerun and `report` were refused
    and every finished point was out of reach. Here: MAX_POINTS points with the longest names, several
    axes and long failure messages."""
    base = RunConfig(out_dir=str(tmp_path), name="big")
    plan = sweep.make_plan(base, {"lr": [round(0.0001 * (i + 1), 6) for i in range(100)],
                                  "label_smoothing": [round(0.001 * i, 6) for i in range(100)]})
    assert len(plan.points) == sweep.MAX_POINTS
    states = [PointState(point) for point in plan.points]
    for state in states:
        state.status, state.message = "failed", "cannot write runs/...: No space left on device; " * 50
    record = sweep.plan_record(plan, states)
    for number, point in enumerate(record["points"]):
        point["name"] = f"{number:05d}-" + "n" * (names.POINT_NAME_LIMIT - 6)
    plan.directory.mkdir()
    rundir.write_sweep(plan.directory, record)
    read = rundir.read_sweep(plan.directory)
    assert len(read["points"]) == sweep.MAX_POINTS
    assert len(read["points"][0]["message"]) <= rundir.POINT_MESSAGE_LIMIT
    sweep.check_directory(plan, overwrite=False)  # what a rerun reads first
