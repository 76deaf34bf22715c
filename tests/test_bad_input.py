"""The newcomer's mistakes, through the CLI: each gets one line naming what is wrong, exit code 2,
no traceback, and leaves no run directory or stray file behind."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import write_dataset
from mnistres import checkpoint
from mnistres.cli import app

runner = CliRunner()


def files_here() -> set[Path]:
    return set(Path(".").rglob("*"))


def refused(args: list[str], fragment: str) -> None:
    """Run the command; it must fail cleanly, mention `fragment`, and write nothing."""
    before = files_here()
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output, result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1, result.output
    assert files_here() == before, f"left behind: {files_here() - before}"


# --- train: names, numbers, sizes ------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--activation", "relux"], "unknown activation 'relux'"),
    (["--optimizer", "adamm"], "unknown optimizer 'adamm'"),
    (["--schedule", "cosinus"], "unknown scheduler 'cosinus'"),
    (["--callback", "early_stop"], "unknown callback 'early_stop'"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--set", "learning_rate=0.1"], "unknown key 'learning_rate'"),
    (["--lr", "fast"], "'fast'"),
    (["--lr", "-0.1"], "lr=-0.1"),
    (["--lr", "0"], "lr=0.0"),
    (["--batch-size", "many"], "'many'"),
    (["--batch-size", "-8"], "batch_size=-8"),
    (["--batch-size", "0"], "batch_size=0"),
    (["--epochs", "two"], "'two'"),
    (["--epochs", "-1"], "epochs=-1"),
    (["--epochs", "0"], "epochs=0"),
    (["--train-size", "lots"], "'lots'"),
    (["--train-size", "-5"], "train_size=-5"),
    (["--train-size", "0"], "train_size=0"),
    (["--batch-size", "321"], "batch_size=321 is larger than the 320 training images"),
    (["--train-size", "100", "--batch-size", "128"], "batch_size=128"),
    (["--val-split", "-0.1"], "val_split=-0.1"),
    (["--val-split", "1"], "val_split=1.0"),
    (["--val-split", "1.5"], "val_split=1.5"),
])
def test_bad_run_options(fast, args, fragment):
    refused(["train", *fast, *args], fragment)


@pytest.mark.parametrize("text, fragment", [
    ("seed: [1, 2\n", "is not valid YAML (line"),
    ("seed: [1, 2]\n", "seed=[1, 2]"),
    ("label_smoothing: lots\n", "label_smoothing='lots'"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("learning_rate: 0.1\n", "unknown key 'learning_rate'"),
])
def test_bad_config_files(fast, tmp_path, text, fragment):
    config = tmp_path / "conf" / "run.yaml"
    config.parent.mkdir()
    config.write_text(text)
    refused(["train", *fast, "--config", str(config)], fragment)


def test_missing_config_file(fast):
    refused(["train", *fast, "--config", "nowhere.yaml"], "config file not found: nowhere.yaml")


# --- devices -------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device, fragment", [
    ("cuda", "device 'cuda' is not available"),
    ("cuda:7", "device 'cuda:7' is not available"),
    ("gpu", "unknown device 'gpu'"),
])
def test_unavailable_devices(fast, device, fragment):
    refused(["train", *fast, "--device", device], fragment)


@pytest.mark.skipif(sys.platform == "darwin", reason="mps may exist on Apple machines")
def test_mps_off_apple(fast):
    refused(["train", *fast, "--device", "mps"], "device 'mps' is not available")


# --- data -----------------------------------------------------------------------------------------

def test_no_data_while_offline(fast, tmp_path):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    refused(["train", *fast, "--data-dir", str(empty), "--no-download"], f"mnist not found in {empty}")


@pytest.mark.parametrize("damage, fragment", [
    (lambda b: b"\x00\x00\x08\x04" + b[4:], "magic number 2052, expected 2051"),
    (lambda b: b[:-100], "is truncated or padded"),
    (lambda b: b[:6], "too short to be an IDX file"),
])
def test_corrupt_idx_files(fast, tmp_path, damage, fragment):
    root = write_dataset(tmp_path / "bad-data")
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    refused(["train", *fast, "--data-dir", str(root)], fragment)


def test_image_and_label_counts_disagree(fast, tmp_path):
    from conftest import idx_bytes

    root = write_dataset(tmp_path / "bad-data")
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(bytes(10), (10,))))
    refused(["train", *fast, "--data-dir", str(root)], "holds 320 images but train-labels-idx1-ubyte.gz 10 labels")


# --- checkpoints ----------------------------------------------------------------------------------

class Exploit:
    """Unpickling this would create a file: the proof that code ran."""

    def __reduce__(self):
        return (Path.touch, (Path("pwned"),))


@pytest.mark.parametrize("make, fragment", [
    (None, "not found"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(os.urandom(4096)), "not a readable checkpoint"),
    (lambda p: torch.save(torch.zeros(3), p), "not an mnistres checkpoint"),
    (lambda p: torch.save({"format": checkpoint.FORMAT, "format_version": 99, "config": {}, "model": {}}, p),
     "newer"),
    (lambda p: (checkpoint.save(p, {"config": {}, "model": {"w": torch.zeros(1000)}}),
                p.write_bytes(p.read_bytes()[:300])), "truncated"),
    (lambda p: torch.save({"format": checkpoint.FORMAT, "format_version": 1, "evil": Exploit()}, p),
     "safe load refuses"),
])
def test_bad_checkpoints(tmp_path, make, fragment):
    path = tmp_path / "ckpts" / "model.pt"
    path.parent.mkdir()
    if make is not None:
        make(path)
    refused(["eval", str(path), "--device", "cpu"], fragment)
    assert not Path("pwned").exists(), "loading a checkpoint must never run code from it"
