"""On the real MNIST, when MNISTRES_DATA_DIR points at it (CI sets it); skipped elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mnistres.cli import app


def test_short_run_on_real_mnist_reaches_95_percent(real_data_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data-dir", str(real_data_dir), "--train-size", "6000", "--epochs", "1",
                                 "--no-download", "--device", "cpu", "--name", "smoke"])
    assert result.exit_code == 0, result.output
    assert len(list(Path("runs/smoke").iterdir())) == 5
    result = runner.invoke(app, ["eval", "runs/smoke/best.pt", "--json", "--data-dir", str(real_data_dir),
                                 "--no-download", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 10_000 and len(report["per_class"]) == 10
    assert report["accuracy"] >= 0.95
