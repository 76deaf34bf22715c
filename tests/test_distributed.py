"""One run on several processes: torchrun with gloo on the CPU gives the numbers of one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from mnistres.train import distributed
from mnistres.cli import app
from mnistres.errors import ConfigError, DeviceError

from processes import wait_for

TIMING = ("seconds", "images_per_s", "eval_seconds")
HANG_GUARD_S = 300  # not a speed assertion: only so that a hang fails the test instead of the suite


@pytest.fixture(autouse=True)
def _no_torchrun_environment(monkeypatch):
    for name in (*distributed.ENVIRONMENT, "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


# --- without processes -------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 5, 17, 64])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_shares_cover_every_item_once(count, size):
    parts = [distributed.share(count, distributed.World(rank, size)) for rank in range(size)]
    covered = [i for part in parts for i in range(count)[part]]
    assert covered == list(range(count))
    assert max(len(range(count)[p]) for p in parts) - min(len(range(count)[p]) for p in parts) <= 1


def test_the_environment_torchrun_sets_is_read_and_checked(monkeypatch):
    assert distributed.launched() == distributed.World()
    monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "2"), monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launched() == distributed.World(1, 2, 1)
    assert not distributed.is_main_process()
    with pytest.raises(DeviceError, match="cuda:LOCAL_RANK|not 'cuda:0'"):
        distributed.device("cuda:0", distributed.launched())
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2, WORLD_SIZE=2"):
        distributed.launched()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="whole numbers"):
        distributed.launched()


def test_commands_other_than_train_refuse_torchrun(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "2"), monkeypatch.setenv("LOCAL_RANK", "0")
    result = CliRunner().invoke(app, ["sweep", "lr", "0.1", "0.01"])
    assert result.exit_code == 2
    assert "mnistres sweep runs as one process; only `mnistres train` runs under torchrun" in result.output
    result = CliRunner().invoke(app, ["train", "--device", "mps", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "under torchrun use --device cuda" in result.output
    assert not list(tmp_path.iterdir())


@pytest.fixture
def group_of_one():
    """A gloo process group of this process alone (the sums across processes are then the identity)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_global_batchnorm_computes_what_batchnorm_computes(group_of_one, momentum):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4, momentum=momentum))
    with torch.no_grad():
        plain[1].weight.uniform_(0.5, 1.5), plain[1].bias.uniform_(-0.5, 0.5)
    made = distributed.globalise_batchnorm(nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4, momentum=momentum)))
    made.load_state_dict(plain.state_dict())
    assert type(made[1]) is distributed.GlobalBatchNorm2d and made.state_dict().keys() == plain.state_dict().keys()
    for step in range(3):
        x = torch.randn(5, 2, 9, 9) * 3 + 1
        outputs = [model(x) for model in (plain, made)]
        torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
        for model, out in zip((plain, made), outputs):
            model.zero_grad()
            (out * torch.linspace(-1, 2, out.numel()).reshape(out.shape)).sum().backward()
        for a, b in zip(plain.parameters(), made.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(made[1], name), getattr(plain[1], name), rtol=1e-5, atol=1e-6)
    plain.eval(), made.eval()
    x = torch.randn(3, 2, 9, 9)
    torch.testing.assert_close(made(x), plain(x))


# --- with processes ----------------------------------------------------------------------

# Records every file or folder that a process creates, changes or removes under AUDIT_ROOT, by rank.
SITECUSTOMIZE = textwrap.dedent('''
    import os, sys
    _root, _log = os.environ.get("AUDIT_ROOT"), os.environ.get("AUDIT_LOG")
    if _root and _log:
        _out = open(f"{_log}.{os.environ.get('RANK', 'none')}", "a", buffering=1)
        _writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        _events = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir", "shutil.copyfile"}

        def _audit(event, args):
            if event == "open":
                path, mode, flags = args
                if not ((mode and any(c in mode for c in "wax+")) or (flags or 0) & _writing):
                    return
            elif event not in _events:
                return
            else:
                path = args[-1] if event == "shutil.copyfile" else args[0]
            if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(_root):
                _out.write(f"{event} {os.fsdecode(path)}\\n")

        sys.addaudithook(_audit)
''')


def run_options(data_dir: Path, out: Path) -> list[str]:
    # 161 images in batches of 32: the last batch holds one image, so rank 1's share of it is empty. The
    # first epoch and a half train on random windows (drawn for the global batch, cut into shares), two batches a step.
    return ["--data-dir", str(data_dir), "--device", "cpu", "--no-download", "--epochs", "4", "--batch-size", "32",
            "--train-size", "161", "--lr", "0.01", "--set", "width=8", "--set", "blocks=1", "--set", "precise_bn=96",
            "--set", "augment=true", "--set", "low_res=20", "--set", "low_res_mode=crop", "--set", "low_res_epochs=1.5",
            "--set", "low_res_batch_size=64",
            "--threads", "1", "--out-dir", str(out)]


def torchrun(args: list[str], tmp_path: Path, **popen: object) -> subprocess.Popen:
    """`torchrun --standalone --nproc-per-node 2 -m mnistres train ARGS`, each rank's output in its own file."""
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "AUDIT_ROOT": str(tmp_path / "runs"),
           "AUDIT_LOG": str(tmp_path / "audit"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--redirects", "3", "--log-dir", str(tmp_path / "logs"), "-m", "mnistres", "train", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finished(process: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, output


def rank_output(tmp_path: Path, rank: int) -> str:
    files = sorted((tmp_path / "logs").rglob(f"{rank}/stdout.log")) + sorted((tmp_path / "logs").rglob(f"{rank}/stderr.log"))
    assert files, f"torchrun wrote no log for rank {rank}"
    return "".join(path.read_text() for path in files)


def history(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def test_two_processes_give_one_process_numbers_and_resume_under_torchrun(data_dir, tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", *run_options(data_dir, runs), "--name", "one"])
    assert result.exit_code == 0, result.output
    one = runs / "one"

    code, output = finished(torchrun([*run_options(data_dir, runs), "--name", "two"], tmp_path))
    assert code == 0, output
    two = runs / "two"
    # The same numbers, up to summation order: metrics to 4 digits, weights to 1e-3.
    for mine, theirs in zip(history(two), history(one), strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            assert value == pytest.approx(theirs[key], rel=1e-3, abs=1e-4), key
    largest = max(float((a - b).abs().max()) for a, b in zip(weights(two).values(), weights(one).values()))
    assert largest < 1e-3
    assert list(weights(two)) == list(weights(one))  # the plain model: no "module." prefix
    summary = json.loads((two / "summary.json").read_text())
    assert summary["distributed"] == {"world_size": 2, "backend": "gloo", "sync_bn": True}
    assert summary["train_images"] == 161 and summary["status"] == "completed"
    # Only rank 0 wrote and printed.
    written = Path(f"{tmp_path}/audit.0").read_text()
    assert f"{two}/.last.pt." in written and f"{two}/.summary.json." in written  # atomic writes: temp, then rename
    assert Path(f"{tmp_path}/audit.1").read_text() == ""
    assert "completed: val_acc" in rank_output(tmp_path, 0)
    assert rank_output(tmp_path, 1).strip() == ""

    # Ctrl-C (torchrun passes it to every process) stops both at one step; resuming under torchrun
    # ends exactly where the uninterrupted run did.
    def restore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    cut = runs / "cut"
    process = torchrun([*run_options(data_dir, runs), "--name", "cut"], tmp_path, preexec_fn=restore_sigint)
    wait_for(lambda: (cut / "metrics.jsonl").is_file(), process)
    process.send_signal(signal.SIGINT)
    code, output = finished(process)
    assert code != 0
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["status"] == "interrupted", output
    assert 1 <= summary["epochs_completed"] < 4
    assert "Interrupted: `mnistres train --resume" in rank_output(tmp_path, 0)

    code, output = finished(torchrun(["--resume", str(cut), "--device", "cpu", "--threads", "1"], tmp_path))
    assert code == 0, output
    assert history(cut) == history(two)
    assert all(torch.equal(a, b) for a, b in zip(weights(cut).values(), weights(two).values()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ranks(args: list[str], data_dirs: tuple[Path, Path],
                extra: tuple[list[str], list[str]] = ([], [])) -> list[subprocess.Popen]:
    """Two ranks started as torchrun starts them (its environment), each with its own `extra` arguments."""
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
            "OMP_NUM_THREADS": "1", "MNISTRES_DEBUG": ""}
    return [subprocess.Popen([sys.executable, "-m", "mnistres", "train", *args, *extra[rank]], text=True,
                             env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank),
                                  "MNISTRES_DATA_DIR": str(data_dirs[rank])},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for rank in range(2)]


def start_pair(args: list[str], data_dirs: tuple[Path, Path],
               extra: tuple[list[str], list[str]] = ([], [])) -> list[tuple[int, str]]:
    """Two ranks started as torchrun starts them (its environment), each watched on its own."""
    processes = start_ranks(args, data_dirs, extra)
    try:
        return [finished(process) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def test_a_mistake_on_one_rank_ends_both_with_one_line_and_exit_2(data_dir, tmp_path):
    options = ["--device", "cpu", "--no-download", "--epochs", "1", "--set", "width=8", "--set", "blocks=1",
               "--threads", "1", "--out-dir", str(tmp_path / "runs")]
    # Found by every rank before they meet: each says it.
    (code0, out0), (code1, out1) = start_pair([*options, "--lr", "fast"], (data_dir, data_dir))
    assert (code0, code1) == (2, 2)
    assert out0 == out1 == "Error: lr='fast': expected a number\n"
    # Found by rank 1 alone (its data folder is empty): rank 0 says it, naming the rank, and both end.
    (code0, out0), (code1, out1) = start_pair(options, (data_dir, tmp_path / "empty"))
    assert (code0, code1) == (2, 2)
    assert out0.startswith(f"Error: rank 1: mnist not found in {tmp_path / 'empty'}") and out0.count("\n") == 1
    assert out1 == ""
    assert not (tmp_path / "runs").exists()


def test_ranks_started_with_different_settings_are_refused_on_every_rank(data_dir, tmp_path):
    """Rank 1 with its own --lr and --seed trained its share with them (val_acc 0.13 instead of 0.54) and
    config.yaml held rank 0's. The ranks now compare their settings when they meet."""
    options = ["--device", "cpu", "--no-download", "--epochs", "1", "--set", "width=8", "--set", "blocks=1",
               "--threads", "1", "--out-dir", str(tmp_path / "runs"), "--name", "mixed"]
    (code0, out0), (code1, out1) = start_pair(options, (data_dir, data_dir), ([], ["--lr", "0.05", "--seed", "7"]))
    assert (code0, code1) == (2, 2), out0 + out1
    assert out0.startswith("Error: the processes of this run were started with different settings: ")
    assert "lr is 0.001 on rank 0 but 0.05 on rank 1" in out0 and "seed is 0 on rank 0 but 7 on rank 1" in out0
    assert out0.count("\n") == 1 and out1 == ""
    assert not (tmp_path / "runs").exists()


def test_a_rank_killed_outright_is_named_in_one_line_and_the_run_resumes(data_dir, tmp_path):
    """SIGKILL to rank 1: rank 0 printed some 60 lines of gloo's traceback."""
    options = ["--device", "cpu", "--no-download", "--epochs", "500", "--set", "width=8", "--set", "blocks=1",
               "--threads", "1", "--out-dir", str(tmp_path / "runs"), "--name", "k"]
    run = tmp_path / "runs" / "k"
    rank0, rank1 = start_ranks(options, (data_dir, data_dir))
    try:
        wait_for(lambda: (run / "last.pt").is_file(), rank0)
        os.kill(rank1.pid, signal.SIGKILL)
        code, output = finished(rank0)
    finally:
        for process in (rank0, rank1):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert code == 2, output
    error = [line for line in output.splitlines() if not line.startswith("epoch ")]
    assert len(error) == 1 and error[0].startswith(f"Error: rank 1 (process {rank1.pid} on "), output
    assert "ended without a word" in error[0] and "mnistres train --resume" in error[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["message"].startswith("rank 1 (process")
    assert (run / "last.pt").is_file()  # resumable
