"""amp=auto on the CPU: bf16 where the CPU computes it in hardware, float32 elsewhere; and a checkpoint's
precision kept by eval and --resume, so that its numbers stay as logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnistres.cli import app
from mnistres.config import RunConfig
from mnistres.train import devices
from mnistres.train.checkpoint import load
from mnistres.trainer import resume_config, train
from test_resume import InterruptAt, metrics

runner = CliRunner()
CPU = torch.device("cpu")


@pytest.mark.parametrize("native, mode, recorded, expected", [
    ("1", "auto", "", torch.bfloat16),  # a new run on a CPU with bf16 in hardware
    ("0", "auto", "", None),  # ... and on one without: emulated bf16 is slower
    ("1", "off", "", None), ("0", "bf16", "", torch.bfloat16),  # asked for: as asked
    ("1", "auto", "float32", None),  # a checkpoint made in float32 goes on in float32
    ("0", "auto", "bfloat16", torch.bfloat16),  # ... and one made in bf16 in bf16, wherever it is measured
    ("1", "auto", None, None),  # made before checkpoints recorded it: auto was float32 on every CPU
    ("1", "auto", "float16", None),  # made on a GPU in fp16, which the CPU does not autocast to
])
def test_auto_chooses_by_the_cpu_and_by_what_a_checkpoint_was_made_in(monkeypatch, native, mode, recorded, expected):
    monkeypatch.setenv("MNISTRES_CPU_BF16", native)
    assert devices.amp_dtype(mode, CPU, recorded) is expected


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, True), (False, True, True), (False, False, False)])
def test_the_capability_is_torchs_report_of_the_cpu(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.delenv("MNISTRES_CPU_BF16")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert devices.cpu_has_native_bf16() is expected
    assert devices.amp_dtype("auto", CPU) is (torch.bfloat16 if expected else None)


def test_a_run_on_a_bf16_cpu_records_its_precision_and_eval_keeps_it(fast, monkeypatch):
    monkeypatch.setenv("MNISTRES_CPU_BF16", "1")
    result = runner.invoke(app, ["train", *fast, "--name", "b"])
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("runs/b/summary.json").read_text())
    assert summary["numerics"]["precision"] == "bfloat16"
    assert load("runs/b/last.pt")["precision"] == "bfloat16"
    # Measured on a CPU without bf16 in hardware, it is still measured as it was trained: the logged accuracy.
    monkeypatch.setenv("MNISTRES_CPU_BF16", "0")
    measured = json.loads(runner.invoke(app, ["eval", "runs/b/last.pt", "--json", "--device", "cpu",
                                              "--data-dir", fast[1], "--no-download"]).stdout)
    assert measured["accuracy"] == summary["final"]["val_acc"]


def test_a_run_resumed_on_a_bf16_cpu_goes_on_in_the_precision_it_began_in(data_dir, tmp_path, monkeypatch):
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=3, batch_size=32, width=8,
                       blocks=1, precise_bn=64, threads=1, lr=0.01, out_dir=str(tmp_path))
    whole = train(config.replace(name="whole"))  # float32 throughout (the conftest's CPU has no bf16)
    with pytest.raises(KeyboardInterrupt):
        train(config.replace(name="cut"), extra_callbacks=[InterruptAt(epoch=2, step=4)])
    monkeypatch.setenv("MNISTRES_CPU_BF16", "1")  # resumed where bf16 would be chosen for a new run
    resumed = train(resume_config(tmp_path / "cut"), resume=True)
    assert resumed.summary["numerics"]["precision"] == "float32"
    assert metrics(tmp_path / "cut") == metrics(whole.run_dir)
    assert load(tmp_path / "cut" / "last.pt")["precision"] == "float32"


def test_a_checkpoint_older_than_the_record_is_measured_in_float32_as_it_was_made(fast, monkeypatch):
    result = runner.invoke(app, ["train", *fast, "--name", "old"])
    assert result.exit_code == 0, result.output
    saved = torch.load("runs/old/last.pt", weights_only=True)
    del saved["precision"]  # as every checkpoint written before mnistres recorded it
    torch.save(saved, "runs/old/last.pt")
    monkeypatch.setenv("MNISTRES_CPU_BF16", "1")
    measured = json.loads(runner.invoke(app, ["eval", "runs/old/last.pt", "--json", "--device", "cpu",
                                              "--data-dir", fast[1], "--no-download"]).stdout)
    summary = json.loads(Path("runs/old/summary.json").read_text())
    assert summary["numerics"]["precision"] == "float32" and measured["accuracy"] == summary["final"]["val_acc"]
