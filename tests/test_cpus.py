"""threads=0 follows the cores other processes leave free: what the kernel's counters say, the choice it
makes, the cgroup quota it respects, and a run whose epochs change their thread count as the load does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnistres.api import Callback
from mnistres.cli import app
from mnistres.config import RunConfig
from mnistres.core import cpus
from mnistres.inference.trained import load_trained
from mnistres.reporting.report import _numerics_text
from mnistres.train import devices
from mnistres.trainer import train

runner = CliRunner()


@pytest.mark.parametrize("cap, cores, others, expected", [
    (2, 2, 0.0, 2), (2, 2, 0.03, 2),  # a quiet machine: every core
    (2, 2, 0.73, 1),  # what a 2-thread run measures beside one busy process (it still gets a third of the time)
    (2, 2, 1.0, 1),  # ... and a 1-thread run: the other core is the busy process's
    (2, 2, 0.5, 2), (2, 2, 0.51, 1),  # a core is taken once more than half of it is used elsewhere
    (2, 2, 3.0, 1),  # never fewer than one
    (4, 8, 1.0, 4), (8, 8, 1.0, 7),  # the cap (torch's count, e.g. physical cores) holds where more are free
])
def test_the_threads_are_the_cores_left_free(cap, cores, others, expected):
    assert cpus.free_threads(cap, cores, others) == expected


def write_stat(path: Path, rows: dict[str, list[int]]) -> Path:
    path.write_text("cpu  1 1 1 1 1 1 1 1 0 0\n" + "".join(
        f"{name} {' '.join(map(str, values))} 0 0\n" for name, values in rows.items()) + "intr 5\nprocs_running 2\n")
    return path


def test_busy_time_is_counted_on_the_cpus_this_process_may_use(tmp_path, monkeypatch):
    monkeypatch.setattr(cpus, "allowed_cpus", lambda: [0, 2])
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait
    stat = write_stat(tmp_path / "stat", {"cpu0": [10, 1, 4, 500, 7, 1, 1, 2], "cpu1": [999, 0, 0, 0, 0, 0, 0, 0],
                                          "cpu2": [3, 0, 2, 400, 0, 0, 0, 0]})
    found = cpus.sample(stat)
    assert found is not None
    assert found.busy == pytest.approx((10 + 1 + 4 + 1 + 1 + 2 + 3 + 2) / tick)
    assert cpus.sample(tmp_path / "missing") is None  # no /proc/stat (macOS, Windows): nothing measured


def test_others_are_the_busy_time_less_this_process_own():
    before, after = cpus.Sample(10.0, 100.0, 5.0), cpus.Sample(12.0, 103.0, 6.0)
    assert cpus.others_between(before, after) == pytest.approx((3.0 - 1.0) / 2.0)
    assert cpus.others_between(after, after) == 0.0


def test_a_share_measures_between_its_choices(monkeypatch):
    looks = iter([cpus.Sample(0.0, 0.0, 0.0), cpus.Sample(1.0, 1.2, 1.0), cpus.Sample(2.0, 3.2, 2.0),
                  cpus.Sample(3.0, 4.2, 3.0)])
    monkeypatch.setattr(cpus, "sample", lambda: next(looks))
    monkeypatch.setattr(cpus.time, "sleep", lambda seconds: None)
    monkeypatch.delenv(cpus.OTHERS_ENV)
    share = cpus.Share(2, cores=2)
    assert share.choose() == 2 and share.others == pytest.approx(0.2)  # 1.2 s busy in 1 s, 1 s of it its own
    assert share.choose() == 1 and share.others == pytest.approx(1.0)  # 2 s busy, 1 s its own
    assert share.choose() == 2 and share.others == pytest.approx(0.0)  # the other process ended


def test_looking_as_the_run_goes_keeps_the_window_recent(monkeypatch):
    clock = [0.0]

    def counters():  # this process busy on one core throughout; another process on the other from t = 2 s
        t = clock[0]
        return cpus.Sample(t, t + max(0.0, t - 2.0), t)

    monkeypatch.setattr(cpus.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(cpus, "sample", counters)
    monkeypatch.delenv(cpus.OTHERS_ENV)
    looked, unlooked = cpus.Share(2, cores=2), cpus.Share(2, cores=2)
    for clock[0] in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
        looked.look()
    assert looked.choose() == 1 and looked.others == pytest.approx(1.0)  # the last second: the other process
    assert unlooked.choose() == 2 and unlooked.others == pytest.approx(1 / 3)  # 3 s, 1 of them loaded


def test_a_share_without_counters_uses_its_cap(monkeypatch):
    monkeypatch.setattr(cpus, "sample", lambda: None)
    monkeypatch.delenv(cpus.OTHERS_ENV)
    assert cpus.Share(3, cores=4).choose() == 3


def test_a_busy_process_is_measured_as_one_core():
    if len(cpus.allowed_cpus()) < 2:
        pytest.skip("needs two cores")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # started and spinning
        before = cpus.sample()
        time.sleep(0.5)
        after = cpus.sample()
    finally:
        busy.kill()
        busy.wait()
    assert before is not None and after is not None
    assert cpus.others_between(before, after) >= 0.75  # one core, less the moments the kernel gave it elsewhere


@pytest.mark.parametrize("membership, files, expected", [
    ("0::/\n", {"cpu.max": "150000 100000"}, 2),  # cgroup v2, a container of 1.5 CPUs: 2 threads
    ("0::/\n", {"cpu.max": "max 100000"}, None),  # no limit
    ("0::/a/b\n", {"a/cpu.max": "50000 100000", "a/b/cpu.max": "max 100000"}, 1),  # a parent's limit holds
    ("0::/host/path\n", {"cpu.max": "300000 100000"}, 3),  # a container sees its own group at the root
    ("4:cpu,cpuacct:/docker/x\n", {"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 2),
    ("4:cpu,cpuacct:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, None),
    ("", {}, None),
])
def test_the_cgroup_quota_caps_the_cores(tmp_path, membership, files, expected):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    (root / "host/path").mkdir(parents=True, exist_ok=True)
    (tmp_path / "membership").write_text(membership)
    assert cpus.quota_cores(root, tmp_path / "membership") == expected
    assert cpus.quota_cores(root, tmp_path / "missing") is None


class LoadAfter(Callback):
    """Other processes busy on one core for the epochs in `loaded`, as MNISTRES_CPU_OTHERS says it."""

    def __init__(self, loaded: set[int]) -> None:
        self.loaded = loaded

    def on_epoch_end(self, trainer, epoch, logs):
        os.environ[cpus.OTHERS_ENV] = "1" if epoch + 1 in self.loaded else "0"


@pytest.fixture
def two_cores(monkeypatch):
    """A machine of two cores with threads=0 meaning up to 2, whatever this one has."""
    monkeypatch.setattr(cpus, "usable_cores", lambda: 2)
    monkeypatch.setattr(devices, "_TORCH_DEFAULT_THREADS", 2)


def test_a_run_follows_the_load_epoch_by_epoch_and_records_it(data_dir, two_cores, monkeypatch, capsys):
    from mnistres.core.display import console

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=3, batch_size=32, width=8, blocks=1,
                       precise_bn=0, name="r")
    monkeypatch.setenv(cpus.OTHERS_ENV, "0")
    result = train(config, extra_callbacks=[LoadAfter({2})], console=console())
    assert [row["threads"] for row in result.history] == [2, 1, 2]
    assert result.summary["numerics"]["threads_by_epoch"] == [2, 1, 2]
    assert "1–2 threads" in _numerics_text(result.summary["numerics"])
    said = capsys.readouterr().out
    assert "1 CPU thread from epoch 2: other processes keep 1.0 of 2 cores busy" in said
    assert "2 CPU threads from epoch 3: the cores are free again" in said
    lines = [json.loads(line) for line in Path("runs/r/metrics.jsonl").read_text().splitlines()]
    assert [line["threads"] for line in lines] == [2, 1, 2]


def test_a_run_started_beside_a_busy_process_takes_the_free_core_and_a_fixed_count_stays(data_dir, two_cores,
                                                                                         monkeypatch):
    monkeypatch.setenv(cpus.OTHERS_ENV, "1")
    common = ["train", "--data-dir", str(data_dir), "--no-download", "--device", "cpu", "--epochs", "1",
              "--batch-size", "32", "--set", "width=8", "--set", "blocks=1", "--set", "precise_bn=0"]
    result = runner.invoke(app, [*common, "--name", "auto"])
    assert result.exit_code == 0, result.output
    assert "1 CPU thread from the start: other processes keep 1.0 of 2 cores busy" in result.output
    summary = json.loads(Path("runs/auto/summary.json").read_text())
    assert summary["numerics"]["threads"] == 1 and "threads_by_epoch" not in summary["numerics"]
    result = runner.invoke(app, [*common, "--threads", "2", "--name", "fixed"])
    assert result.exit_code == 0, result.output
    assert "CPU thread" not in result.output
    assert json.loads(Path("runs/fixed/summary.json").read_text())["numerics"]["threads"] == 2


def test_eval_follows_the_free_cores_and_its_numbers_do_not_depend_on_them(data_dir, two_cores, monkeypatch):
    result = train(RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=1, batch_size=32, width=8,
                             blocks=1, precise_bn=0, threads=2, name="m"))
    monkeypatch.setenv(cpus.OTHERS_ENV, "1")
    trained = load_trained(result.run_dir / "best.pt", device="cpu")
    assert torch.get_num_threads() == 1
    # The forward pass gives the same bits with 1 thread as with 2: eval under load measures what was logged.
    images = torch.randn(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        one = trained.network(images)
        torch.set_num_threads(2)
        two = trained.network(images)
    assert torch.equal(one, two)
