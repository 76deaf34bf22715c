"""On the real MNIST, when MNISTRES_DATA_DIR points at it (CI sets it); skipped elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mnistres.runs import rundir
from mnistres.cli import app


def test_short_run_on_real_mnist_reaches_95_percent(real_data_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data-dir", str(real_data_dir), "--train-size", "6000", "--epochs", "1",
                                 "--no-download", "--device", "cpu", "--name", "smoke"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in Path("runs/smoke").iterdir()) == \
        ["best.pt", "config.yaml", "last.pt", "metrics.jsonl", "mistakes.npz", "summary.json"]
    result = runner.invoke(app, ["eval", "runs/smoke/best.pt", "--json", "--data-dir", str(real_data_dir),
                                 "--no-download", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 10_000 and len(report["per_class"]) == 10
    assert report["accuracy"] >= 0.95
    kept = rundir.read_mistakes(Path("runs/smoke"))  # the final model's mistakes on the test file
    assert kept.scored == 10_000 and kept.total == round(10_000 * (1 - report["accuracy"]))

    # The same digits written large on light paper (PNG and JPEG) are predicted as the clean ones.
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "own_images.py"
    completed = subprocess.run([sys.executable, str(script), "runs/smoke/best.pt", "--data-dir", str(real_data_dir),
                                "--per-class", "5", "--json", "paper.json"], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    paper = json.loads(Path("paper.json").read_text())
    assert paper["digits"] == 50 and paper["clean_accuracy"] >= 0.9
    for kind in ("png", "jpg"):
        assert paper[kind]["same_as_clean"] >= 0.9 and not paper[kind]["errors"], paper[kind]
    assert "(50 usable images): accuracy" in completed.stdout and "precision" in completed.stdout  # eval --images ran


    # Dim photos of real test digits (pencil in poor light, chalk on a blackboard, light falling unevenly,
    # sensor noise) are predicted as their bright scans: 19 of 20 at least, from 20 levels of contrast up.
    from test_images import DIM_CASES, dim

    from mnistres.inference import images
    from mnistres.inference.predict import probabilities
    from mnistres.train import data as data_module
    from mnistres.inference.trained import load_trained

    model = load_trained("runs/smoke/best.pt", device="cpu")
    digits = data_module.load_split("mnist", Path(real_data_dir), "test", download=False)[0][:20, 0].numpy()
    rng = np.random.default_rng(0)

    def answers(arrays):
        return [int(np.argmax(p)) for p in probabilities(model, [images.to_mnist(a) for a in arrays])]

    bright = answers([dim(digit, 255.0, paper=255.0) for digit in digits])
    for case, (contrast, options) in DIM_CASES.items():
        agree = sum(a == b for a, b in zip(answers([dim(d, contrast, rng=rng, **options) for d in digits]), bright))
        assert agree >= (19 if contrast >= 20 else 15), (case, agree)
