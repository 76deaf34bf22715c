"""What a model gets wrong: the selection rule, the file a run keeps, `eval --mistakes` and the report's grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistres.runs import mistakes, rundir
from mnistres.cli import app

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_select_orders_by_confidence_and_keeps_positions_and_names():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.3, 0.7]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 0])  # wrong: 1 (0.8), 2 (0.7), 3 (0.6), 4 (0.7, a tie with 2)
    images = np.arange(5 * 4, dtype=np.uint8).reshape(5, 2, 2)
    found = mistakes.select(probabilities, labels, images, source="s", positions=np.array([10, 11, 12, 13, 14]))
    assert found.total == 4 and found.scored == 5 and len(found) == 4
    assert found.position.tolist() == [11, 12, 14, 13]  # the tie keeps the earlier image first
    assert found.label.tolist() == [0, 0, 0, 1] and found.predicted.tolist() == [1, 1, 1, 0]
    assert found.confidence.tolist() == pytest.approx([0.8, 0.7, 0.7, 0.6])
    assert (found.images[0] == images[1]).all()
    assert found.rows()[0] == {"index": 11, "label": 0, "predicted": 1, "confidence": pytest.approx(0.8)}

    kept = mistakes.select(probabilities, labels, images, source="s", names=list("abcde"), keep=2)
    assert kept.total == 4 and len(kept) == 2 and [row["file"] for row in kept.rows()] == ["b", "c"]
    assert len(kept.of_pair(0, 1)) == 2 and len(kept.of_pair(1, 0)) == 0
    none = mistakes.select(probabilities[:1], labels[:1], images[:1], source="s")
    assert none.total == 0 and len(none) == 0


def test_confused_pairs_most_first_and_without_empty_cells():
    confusion = [[50, 3, 0], [1, 40, 3], [0, 7, 30]]
    assert mistakes.confused_pairs(confusion, 3) == [(2, 1, 7), (0, 1, 3), (1, 2, 3)]
    assert mistakes.confused_pairs(confusion, 10)[-1] == (1, 0, 1)
    assert mistakes.confused_pairs([[5, 0], [0, 5]], 3) == []


def test_a_completed_run_keeps_its_mistakes_with_their_places_in_the_file(fast, data_dir):
    from mnistres.train import data

    result = invoke("train", *fast, "--train-size", "64", "--val-split", "0.25", "--name", "held")
    assert result.exit_code == 0, result.output
    run = Path("runs/held")
    found = rundir.read_mistakes(run)
    summary = json.loads((run / "summary.json").read_text())
    matrix = np.array(summary["confusion_matrix"])
    assert found.scored == summary["val_images"] == 80
    assert found.total == found.scored - np.trace(matrix) and len(found) == min(found.total, mistakes.KEEP)
    assert found.total > 0, "the tiny model should still get some held-out images wrong"
    assert found.source == "the held-out part of the mnist training file"
    # Each kept mistake is the very image at its place in the training file, with that file's label.
    images, labels = data.load_split("mnist", data_dir, "train", False)
    assert (images[found.position, 0].numpy() == found.images).all()
    assert (labels[found.position].numpy() == found.label).all()
    # The pairs it shows follow the confusion matrix the run recorded.
    for true, predicted, count in mistakes.confused_pairs(matrix.tolist(), 3):
        assert len(found.of_pair(true, predicted)) == count == matrix[true, predicted]
    assert np.all(np.diff(found.confidence) <= 0)


def test_eval_mistakes_draws_the_grid_and_lists_the_same_mistakes_the_run_kept(fast, data_dir):
    assert invoke("train", *fast, "--name", "t").exit_code == 0
    kept = rundir.read_mistakes(Path("runs/t"))
    assert kept.source == "the mnist test file" and kept.total > 3
    # With --json the grid is drawn only where -o says (issue 32: it was written to ./mistakes.png silently).
    result = invoke("eval", "runs/t/last.pt", "--mistakes", "3", "--data-dir", str(data_dir), "--device", "cpu",
                    "--threads", "1", "--json", "-o", "mistakes.png")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["mistakes"]
    assert Path("mistakes.png").read_bytes().startswith(PNG) and listed["figure"] == "mistakes.png"
    assert listed["total"] == kept.total and listed["source"] == kept.source
    # The same model on the same images: the same mistakes, in the same order.
    assert [row["index"] for row in listed["shown"]] == kept.position[:3].tolist()
    assert [row["predicted"] for row in listed["shown"]] == kept.predicted[:3].tolist()

    shown = invoke("eval", "runs/t/last.pt", "--mistakes", "36", "-o", "out/grid.png", "--data-dir", str(data_dir),
                   "--device", "cpu")
    assert shown.exit_code == 0, shown.output
    assert f"Mistakes: {kept.total:,} in all; the {min(36, kept.total)} most confident drawn in out/grid.png" \
        in " ".join(shown.output.split())
    assert Path("out/grid.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("args, fragment", [
    (["-o", "grid.png"], "--output grid.png is where --mistakes draws its grid; add --mistakes N"),
    (["--mistakes", "401"], "--mistakes 401: expected 1 to 400"),
    (["--mistakes", "4", "-o", "grid.jpg"], "give a path ending in .png"),
    (["--mistakes", "4", "-o", "folder.png"], "is a folder"),
])
def test_eval_mistakes_mistakes_are_one_line(fast, data_dir, args, fragment):
    assert invoke("train", *fast, "--name", "t", "--epochs", "1").exit_code == 0
    Path("folder.png").mkdir()
    result = invoke("eval", "runs/t/last.pt", "--data-dir", str(data_dir), "--device", "cpu", *args)
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not Path("grid.png").exists() and not Path("grid.jpg").exists()


def test_report_shows_the_best_runs_mistakes_and_confused_pairs(fast):
    assert invoke("sweep", "lr", "0.01", "0.001", *fast, "--name", "s", "--jobs", "1", "--no-report").exit_code == 0
    result = invoke("report", "runs/s", "-o", "r/report.md")
    assert result.exit_code == 0, result.output
    text = Path("r/report.md").read_text()
    assert "## What the best run gets wrong" in text
    for figure in ("r/report-s-mistakes.png", "r/report-s-pairs.png"):
        assert Path(figure).read_bytes().startswith(PNG)
        assert f"]({Path(figure).name})" in text

    # A run older than mistakes.npz: the section says how to draw them; a damaged file is one line.
    for run in Path("runs/s").glob("lr=*"):
        (run / rundir.MISTAKES).unlink()
    assert invoke("report", "runs/s", "-o", "older.md").exit_code == 0
    assert "kept no mistakes.npz" in Path("older.md").read_text() and not Path("older-s-pairs.png").exists()
    for run in Path("runs/s").glob("lr=*"):
        (run / rundir.MISTAKES).write_bytes(b"not a zip file")
    damaged = invoke("report", "runs/s", "-o", "damaged.md")
    assert damaged.exit_code == 2 and "mistakes.npz" in damaged.output and "Traceback" not in damaged.output


def test_a_pair_with_fewer_kept_examples_than_images_is_said_so(fast):
    """Only the most confident mistakes are kept (500): a pair of 103 images showed 3 examples without a word."""
    assert invoke("train", *fast, "--name", "t").exit_code == 0
    found = rundir.read_mistakes(Path("runs/t"))
    assert found.total > 2
    rundir.write_mistakes(Path("runs/t"), found.first(2))  # as if only the 2 most confident were kept
    result = invoke("report", "runs/t", "-o", "r.md")
    assert result.exit_code == 0, result.output
    text = Path("r.md").read_text()
    assert f"The run kept its 2 most confident mistakes of {found.total:,} (mistakes.npz)" in text
    assert " shows " in text and " of its " in text
