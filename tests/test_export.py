"""`mnistres export`: torch.export and ONNX artefacts that reproduce the checkpoint's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnistres.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def checkpoint(fast) -> Path:
    result = invoke("train", *fast, "--name", "x")
    assert result.exit_code == 0, result.output
    return Path("runs/x/best.pt").resolve()


def test_pt2_is_self_contained_and_matches_the_checkpoint(checkpoint, data_dir, tmp_path):
    result = invoke("export", str(checkpoint), "-o", "model.pt2", "--data-dir", str(data_dir), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "torch.export" and report["checked_images"] == 160  # the whole synthetic test set
    assert report["same_prediction"] == 1.0 and report["max_abs_difference"] < 1e-4
    # Loaded by torch alone, in a fresh process: no mnistres, any batch size.
    script = (
        "import sys, torch\n"
        "model = torch.export.load('model.pt2').module()\n"
        "for n in (1, 7):\n"
        "    assert model(torch.rand(n, 1, 28, 28)).shape == (n, 10)\n"
        "assert not any(name.startswith('mnistres') for name in sys.modules)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert sorted(p.name for p in Path.cwd().iterdir() if p.is_file()) == ["model.pt2"]  # no temporary left


def test_onnx_matches_the_checkpoint(checkpoint, data_dir, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    result = invoke("export", str(checkpoint), "-o", "model.onnx", "--data-dir", str(data_dir), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "ONNX" and report["checked_images"] == 160
    assert report["same_prediction"] == 1.0 and report["max_abs_difference"] < 1e-4
    assert sorted(p.name for p in Path.cwd().iterdir() if p.is_file()) == ["model.onnx"]  # one file, no side files
    # The file alone, elsewhere, runs in onnxruntime.
    import numpy as np
    import onnxruntime

    alone = tmp_path / "elsewhere" / "model.onnx"
    alone.parent.mkdir()
    alone.write_bytes(Path("model.onnx").read_bytes())
    session = onnxruntime.InferenceSession(str(alone), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)})
    assert logits.shape == (3, 10)


def test_export_checks_random_images_when_no_test_set_is_at_hand(checkpoint, tmp_path, monkeypatch):
    result = invoke("export", str(checkpoint), "-o", "model.pt2", "--data-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 0, result.output
    assert "1000 random images" in result.output and "same prediction on 100.0%" in result.output


@pytest.mark.parametrize("output, fragment", [
    ("model.pkl", "must end in .pt2 (torch.export) or .onnx"),
    ("no-such-folder/model.pt2", "does not exist"),
])
def test_export_mistakes_are_one_line(checkpoint, output, fragment):
    result = invoke("export", str(checkpoint), "-o", output)
    assert result.exit_code == 2 and fragment in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list(Path.cwd().glob("model*"))


def test_onnx_without_the_package_says_what_to_install(checkpoint, monkeypatch):
    import importlib.util

    pytest.importorskip("onnx")  # without it too, both are named

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    result = invoke("export", str(checkpoint), "-o", "model.onnx")
    assert result.exit_code == 2 and "pip install onnxscript" in result.output
    assert not Path("model.onnx").exists()


def test_onnx_on_a_torch_without_the_dynamo_exporter_is_one_line(checkpoint, monkeypatch):
    import torch

    def export_of_torch_2_4(model, args, f=None, export_params=True, verbose=False, input_names=None):
        raise AssertionError("must not be called")

    monkeypatch.setattr(torch.onnx, "export", export_of_torch_2_4)
    result = invoke("export", str(checkpoint), "-o", "model.onnx")
    assert result.exit_code == 2, result.output
    assert "ONNX export needs PyTorch 2.5 or later" in result.output and "FILE.pt2" in result.output
    assert not Path("model.onnx").exists()


def test_an_onnxscript_too_old_for_this_torch_is_one_line(checkpoint, monkeypatch):
    import torch

    pytest.importorskip("onnx")  # without the packages, their absence is said first
    pytest.importorskip("onnxscript")

    def export_missing_a_module(model, args, f=None, *, dynamo=False, **options):  # torch 2.14 beside onnxscript 0.1
        raise ModuleNotFoundError("No module named 'onnx_ir'", name="onnx_ir")

    monkeypatch.setattr(torch.onnx, "export", export_missing_a_module)
    result = invoke("export", str(checkpoint), "-o", "model.onnx")
    assert result.exit_code == 2, result.output
    assert "ONNX export needs onnx_ir" in result.output and "pip install --upgrade onnx onnxscript" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not Path("model.onnx").exists()
