"""On a CUDA GPU: training, resuming, evaluating and exporting (benchmarks/gpu.sh runs these; they skip
without a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnistres.train.checkpoint import load
from mnistres.cli import app
from mnistres.config import RunConfig
from mnistres.trainer import resume_config, train

from test_resume import InterruptAt, metrics

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def config(data_dir: Path, out: Path) -> RunConfig:
    return RunConfig(data_dir=str(data_dir), download=False, device="cuda", epochs=3, batch_size=32, width=8,
                     blocks=1, precise_bn=64, augment=True, lr=0.01, out_dir=str(out))


def test_cuda_training_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
    whole = train(config(data_dir, tmp_path).replace(name="whole"))
    assert whole.status == "completed" and whole.summary["device"].startswith("cuda")
    assert whole.summary["numerics"]["precision"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    with pytest.raises(KeyboardInterrupt):
        train(config(data_dir, tmp_path).replace(name="cut"), extra_callbacks=[InterruptAt(epoch=2, step=4)])
    resumed = train(resume_config(tmp_path / "cut"), resume=True)
    assert resumed.status == "completed"
    # cuDNN may pick kernels that sum in another order from run to run: equal up to that.
    for mine, theirs in zip(metrics(tmp_path / "cut"), metrics(whole.run_dir), strict=True):
        for key, value in mine.items():
            assert value == pytest.approx(theirs[key], rel=1e-3, abs=1e-3), key
    a, b = load(whole.run_dir / "last.pt")["model"], load(tmp_path / "cut" / "last.pt")["model"]
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-2


def test_cuda_checkpoint_evaluates_and_exports(data_dir, tmp_path):
    run = train(config(data_dir, tmp_path).replace(name="run", epochs=1))
    checkpoint = str(run.run_dir / "best.pt")
    evaluated = CliRunner().invoke(app, ["eval", checkpoint, "--device", "cuda", "--data-dir", str(data_dir), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["accuracy"] == pytest.approx(run.history[-1]["val_acc"], abs=0.02)
    exported = CliRunner().invoke(app, ["export", checkpoint, "-o", str(tmp_path / "model.pt2"),
                                        "--data-dir", str(data_dir)])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "model.pt2").is_file()
