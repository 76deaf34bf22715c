"""benchmarks/speed.py runs end to end on tiny data and writes what it measured.

Speed itself is never asserted: the machine is shared and noisy. This only checks that the
benchmark works, so that its figures in docs/benchmarks/ can be reproduced.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def test_speed_benchmark_runs_on_tiny_data(data_dir, tmp_path):
    out = tmp_path / "speed.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--images", "64", "--rounds", "2", "--eval-rounds", "2",
         "--batch-sizes", "16", "32", "--recipes", "default", "fast", "--target", "0.0", "--threads", "1",
         "--train-size", "320", "--seeds", "0", "1", "--reference-batch-sizes", "16", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())

    assert [row["batch_size"] for row in results["train"]] == [16, 32]
    # the engine's choices are also measured switched off, at the ablation batch size (32) only
    assert set(results["train"][0]["sides"]) == {"mnistres", "baseline"}
    assert set(results["train"][1]["sides"]) == {"mnistres", "baseline", "mnistres, NCHW layout",
                                                 "mnistres, unfused optimizer"}
    assert "mnistres, eval batches of 1,000" in results["eval"]["sides"]
    for row in results["train"] + [results["eval"]]:
        baseline = row["sides"]["baseline"]["images_per_s"]
        for side in row["sides"].values():
            values = side["images_per_s"]
            assert len(values) == 2 and all(v > 0 for v in values)
            assert side["ratio_to_baseline"] == statistics.median(values) / statistics.median(baseline)
            ours = row["sides"]["mnistres"]["images_per_s"]
            assert side["paired_ratio_to_mnistres"] == statistics.median(a / b for a, b in zip(values, ours))
        assert row["ratio_of_medians"] == row["sides"]["mnistres"]["ratio_to_baseline"]
    assert results["eval"]["images"] == 160  # the whole (synthetic) test set

    outcomes = results["time_to_accuracy"]
    assert [(o["recipe"], o["seed"]) for o in outcomes] == [("defaults", 0), ("defaults", 1), ("--preset fast", 0),
                                                            ("--preset fast", 1)]
    for outcome in outcomes:  # a target of 0 is reached after the first epoch, which is all that counts
        assert outcome["reached_at_epoch"] == 1 and len(outcome["val_acc_per_epoch"]) == 1
        assert outcome["train_seconds"] == outcome["seconds_per_epoch"][0] > 0
        assert outcome["images_seen"] == 320  # one epoch of the tiny training set
        # beside it, one full-resolution epoch of the whole training set, at its own batch size and at 16
        assert set(outcome["full_epoch_seconds"]) == {"own", "16"} and min(outcome["full_epoch_seconds"].values()) > 0
        assert outcome["ratio_to_full_epoch"] == outcome["train_seconds"] / outcome["full_epoch_seconds"]["own"]
    recipes = {outcome["recipe"]: outcome for outcome in outcomes}
    assert recipes["--preset fast"]["settings"]["optimizer"] != recipes["defaults"]["settings"]["optimizer"]
    assert recipes["--preset fast"]["settings"]["train_size"] == 320  # the command line's, over the preset's
    assert "time to 0.0%" in completed.stdout and "training, batch 32" in completed.stdout
    assert "one full-resolution epoch: " in completed.stdout and " s at batch 16" in completed.stdout
    assert not list(tmp_path.glob("runs"))  # its runs went to a temporary folder, not the working directory


def test_speed_benchmark_measures_only_the_parts_asked(data_dir, tmp_path):
    out = tmp_path / "speed.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--images", "64", "--eval-rounds", "1",
         "--parts", "eval", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())
    assert "eval" in results and "train" not in results and "time_to_accuracy" not in results
    assert "evaluation, 160 test images" in completed.stdout and "time to" not in completed.stdout


def test_speed_benchmark_needs_a_data_folder(tmp_path):
    completed = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120,
                               cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert completed.returncode == 2 and "--data-dir" in completed.stderr


GPU_SCRIPT = SCRIPT.parent / "gpu.sh"


def test_the_gpu_script_runs_its_cpu_safe_parts(tmp_path):
    """benchmarks/gpu.sh --dry-run: the CUDA tests (skipped here) and every measurement of gpu.py on the CPU
    with tiny data, its files written; figures are not checked (they mean nothing there)."""
    import os

    scratch = tmp_path / "tmp"  # the system's temporary folder, for this test: the script cleans up after itself
    scratch.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(scratch)}
    out = tmp_path / "figures"  # given as a relative path: from where the script is started, not the checkout
    completed = subprocess.run(["bash", str(GPU_SCRIPT), "figures", "--dry-run"], capture_output=True, text=True,
                               timeout=600, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert [p.name for p in scratch.iterdir() if p.name.startswith("mnistres-gpu-")] == []
    tests_log = (out / "gpu-tests.log").read_text()
    assert "skipped" in tests_log and "needs a CUDA GPU" in tests_log
    results = json.loads((out / "gpu.json").read_text())
    assert results["dry_run"] is True and results["skipped"] == []
    assert [(row["variant"], row["batch_size"]) for row in results["training"]] == [
        ("eager", 32), ("eager", 128), ("eager", 512), ("eager, cuDNN benchmark off", 128)]
    assert all(row["median"] > 0 for row in results["training"]) and results["evaluation"]["median"] > 0
    assert [(row["recipe"], row["seed"]) for row in results["time_to_99"]] == [
        ("--preset fast", 0), ("--preset fast", 1), ("--preset fast", 2),
        *((("the previous --preset fast (batch 128, all images)", seed) for seed in (0, 1, 2))), ("defaults", 0)]
    previous = results["time_to_99"][3]["settings"]
    assert (previous["batch_size"], previous["low_res"]) == (128, 0)
    table = (out / "gpu.md").read_text()
    assert "--dry-run: not a measurement" in table and "| eager | 512 |" in table

    refused = subprocess.run(["bash", str(GPU_SCRIPT), "--fast"], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "unknown option --fast" in refused.stderr


def test_the_gpu_script_keeps_to_its_budget(tmp_path):
    """Past --budget seconds no measurement starts: each is listed as skipped in both files, which are
    written all the same (a lent GPU's time may end before the script does)."""
    out = tmp_path / "figures"
    completed = subprocess.run([sys.executable, str(SCRIPT.parent / "gpu.py"), "--dry-run", "--budget", "0",
                                "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((out / "gpu.json").read_text())
    assert results["training"] == [] and results["evaluation"] is None and results["time_to_99"] == []
    assert results["skipped"][0] == "training images/s, batch 32, eager" and len(results["skipped"]) == 12
    assert "time to 99 %, --preset fast, seed 2" in results["skipped"]
    table = (out / "gpu.md").read_text()
    assert "Not measured (past the 0 s budget): training images/s, batch 32, eager;" in table


def test_the_gpu_script_takes_the_figures_when_a_cuda_test_fails(tmp_path):
    """gpu.sh in a stand-in tree (a failing cuda-marked test, a gpu.py that only notes it ran): the figures
    are still taken, and the script ends with pytest's exit code, saying why."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "benchmarks" / "gpu.sh").write_text(GPU_SCRIPT.read_text())
    (tmp_path / "benchmarks" / "gpu.py").write_text(
        "import sys, pathlib\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "(out / 'gpu.md').write_text('figures\\n')\n")
    (tmp_path / "tests" / "test_stand_in.py").write_text(
        "import pytest\n\n\n@pytest.mark.cuda\ndef test_fails():\n    assert False\n")
    out = tmp_path / "figures"
    completed = subprocess.run(["bash", str(tmp_path / "benchmarks" / "gpu.sh"), str(out)], capture_output=True,
                               text=True, timeout=300, cwd=tmp_path,
                               env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert (out / "gpu.md").read_text() == "figures\n" and "1 failed" in (out / "gpu-tests.log").read_text()
    assert "the CUDA tests failed (exit 1" in completed.stderr


def test_step_cost_benchmark_prices_each_side(tmp_path):
    script = SCRIPT.parent / "step_cost.py"
    out = tmp_path / "cost.json"
    completed = subprocess.run(
        [sys.executable, str(script), "--batch-size", "8", "--sides", "16", "12", "--rounds", "2", "--steps", "1",
         "--width", "8", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    measured = json.loads(out.read_text())["seconds_per_step"]
    assert set(measured) == {"28", "16", "12"} and all(len(v) == 2 and min(v) > 0 for v in measured.values())
    assert "side 16" in completed.stdout and "of full size" in completed.stdout


def test_runs_listing_benchmark_times_both_ways(tmp_path):
    out = tmp_path / "listing.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "runs_listing.py"), "--runs", "12", "--rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    measured = json.loads(out.read_text())
    assert measured["runs"] == 12 and len(measured["list_runs_seconds"]) == len(measured["command_seconds"]) == 1
    assert "12 run directories: list_runs" in completed.stdout
