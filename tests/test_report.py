"""`mnistres report`: reads run files only; its tables and observations follow from the numbers.

The run directories here are written by hand (config.yaml, metrics.jsonl, summary.json), so
each test knows exactly which numbers the report must show and which sentences they support.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from mnistres.reporting import figures, reference, report
from mnistres.runs import results
from mnistres.cli import app
from mnistres.config import RunConfig

runner = CliRunner()


def make_run(root: Path, name: str, val_accs: list[float], *, status: str = "completed", seed: int = 0,
             train_gap: float = -0.002, **config: object) -> Path:
    """A run directory whose epochs reach the given validation accuracies."""
    path = root / name
    path.mkdir(parents=True)
    full = RunConfig(seed=seed, name=name, out_dir=str(root), width=8, blocks=1, epochs=len(val_accs),
                     **config).to_dict()
    (path / "config.yaml").write_text(yaml.safe_dump(full))
    history = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_acc": acc + train_gap, "val_loss": 1.1 / (i + 1),
                "val_acc": acc, "lr": 0.001, "seconds": 2.0, "images_per_s": 100.0}
               for i, acc in enumerate(val_accs)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    confusion = [[10 if i == j else 0 for j in range(10)] for i in range(10)]
    per_class = [{"class": i, "support": 10, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
                 for i in range(10)]
    summary = {"status": status, "message": "", "final": history[-1] if history else {}, "val_set": "test",
               "train_images": 600, "val_images": 100, "per_class": per_class, "confusion_matrix": confusion,
               "parameters": 2818, "device": "cpu (1 thread)", "versions": {"mnistres": "0.1.0"},
               "started": "2026-11-30T06:00:00+00:00", "finished": "2026-11-30T06:01:00+00:00"}
    if status == "diverged":
        summary["diverged_at"] = {"epoch": len(val_accs) + 1, "step": 7, "lr": 0.1}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def make_sweep(root: Path, key: str, variants: dict, runs: dict[str, list[list[float]]], **config: object) -> Path:
    """A sweep directory: sweep.yaml plus one run per (value, seed), each with `config`'s settings too."""
    points = []
    for value, seeds in runs.items():
        for seed, accs in enumerate(seeds):
            name = f"{key}={value},seed={seed}"
            make_run(root, name, accs, seed=seed, **{**config, key: variants[value]})
            points.append({"name": name, "values": {key: variants[value]}, "seed": seed})
    (root / "sweep.yaml").write_text(yaml.safe_dump({"axes": {key: list(variants.values())}, "points": points}))
    return root


def observations(tmp_path: Path, runs: dict[str, list[list[float]]]) -> list[str]:
    sweep_dir = make_sweep(tmp_path / "s", "lr", {v: float(v) for v in runs}, runs)
    return report.observations(results.load_sweep(sweep_dir))


def test_a_lead_beyond_the_seed_spread_is_called_so(tmp_path):
    found = observations(tmp_path, {"0.01": [[0.97, 0.990], [0.97, 0.992]], "0.1": [[0.9, 0.950], [0.9, 0.954]]})
    assert found[0].startswith("Highest final validation accuracy: lr=0.01 with 99.10 ± 0.14 %, 3.90 points ahead")
    assert "larger than either variant's seed standard deviation (up to 0.28 points)" in found[0]


def test_a_lead_inside_the_seed_spread_is_not_called_a_difference(tmp_path):
    found = observations(tmp_path, {"0.01": [[0.97, 0.990], [0.97, 0.980]], "0.1": [[0.9, 0.984], [0.9, 0.982]]})
    assert "lr=0.01 with 98.50 ± 0.71 %, 0.20 points ahead of lr=0.1 (98.30 ± 0.14 %)" in found[0]
    assert "within the seed standard deviation" in found[0] and "not told apart" in found[0]


def test_one_seed_means_the_spread_is_unknown(tmp_path):
    found = observations(tmp_path, {"0.01": [[0.97, 0.99]], "0.1": [[0.9, 0.95]]})
    assert "spread is unknown" in found[0] and "--seeds" in found[0]


def test_unstable_diverged_and_target_observations(tmp_path):
    root = tmp_path / "s"
    make_sweep(root, "lr", {"0.01": 0.01, "0.1": 0.1},
               {"0.01": [[0.98, 0.991, 0.992, 0.993]], "0.1": [[0.95, 0.90, 0.96, 0.93]]})
    make_run(root, "lr=0.1,seed=1", [0.5], status="diverged", seed=1, lr=0.1)
    plan = yaml.safe_load((root / "sweep.yaml").read_text())
    plan["points"].append({"name": "lr=0.1,seed=1", "values": {"lr": 0.1}, "seed": 1})
    (root / "sweep.yaml").write_text(yaml.safe_dump(plan))
    found = report.observations(results.load_sweep(root))
    text = "\n".join(found)
    # Over its last 3 epochs lr=0.1 went 0.90 -> 0.96 -> 0.93: a 3-point fall; lr=0.01 only rose.
    assert ("Unstable validation accuracy: it fell by more than 0.50 points from one epoch to the next within the "
            "last 3 epochs (largest fall, mean over runs) for lr=0.1 (3.00 points).") in text
    assert "1 run diverged (loss became NaN or infinite): lr=0.1,seed=1 (epoch 2, step 7)" in text
    assert "Epochs to 99 % validation accuracy: lr=0.01: 2." in text
    assert "Never reached 99 % validation accuracy: lr=0.1 (in 4 epochs)" in text
    rows = results.result_rows(results.load_sweep(root))
    assert rows[1][0] == "lr=0.1" and rows[1][-1] == "1 completed, 1 diverged"
    assert rows[1][2] == "93.00"  # only the completed run counts toward the mean


def test_rising_accuracy_is_not_called_unstable(tmp_path):
    found = observations(tmp_path, {"0.01": [[0.5, 0.8, 0.97]], "0.1": [[0.5, 0.9, 0.95]]})
    assert found[1] == ("No variant's validation accuracy fell by more than 0.50 points from one epoch to the next "
                        "within the last 3 epochs (largest fall, mean over runs).")


def test_one_epoch_one_point_and_validation_above_train_are_worded_right(tmp_path):
    found = observations(tmp_path, {"0.01": [[0.95]], "0.1": [[0.96]]})
    text = "\n".join(found)
    assert "(in 1 epoch)" in text and "1 epochs" not in text
    # make_run's train accuracy sits 0.2 points below validation: said as "above it by", not a negative gap
    assert "(above it by up to 0.20 points)" in text and "-0.20" not in text
    study = results.load_sweep(tmp_path / "s")
    written = report.write([study], tmp_path / "r.md")
    assert "1 variant ×" not in written.path.read_text() and "2 variants × seeds 0" in written.path.read_text()
    assert "measured s/epoch" in written.path.read_text()


def test_accuracy_curves_are_in_percent_like_the_tables(tmp_path):
    variant = results.load_sweep(make_sweep(tmp_path / "s", "lr", {"0.1": 0.1}, {"0.1": [[0.9, 0.95]]})).variants[0]
    epochs, mean, low, high = figures._series(variant, "val_acc")
    assert mean == pytest.approx([90.0, 95.0])
    assert figures._series(variant, "val_loss")[1] == pytest.approx([1.1, 0.55])


def test_train_validation_gaps_and_ties(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a", [0.95, 0.97], train_gap=0.015, lr=0.1)
    make_run(root, "b", [0.95, 0.97], train_gap=0.004, lr=0.01)
    found = report.observations(results.load_studies([root])[0])
    assert "level to 0.01 points with" in found[0]
    assert "by more than 1.00 points in the final epoch for: lr=0.1 (1.50 points)." in found[2]
    (root / "a").rename(tmp_path / "a")  # without the 1.5-point gap
    found = report.observations(results.load_studies([root])[0])
    assert found[2] == ("No variant's final train accuracy exceeds its validation accuracy by more than 1.00 points; "
                        "the largest gap is 0.40 points (b).")


def test_report_command_on_a_sweep_and_a_loose_run(tmp_path):
    sweep_dir = make_sweep(tmp_path / "study", "activation", {"relu": "relu", "tanh": "tanh"},
                           {"relu": [[0.98, 0.99], [0.98, 0.991]], "tanh": [[0.97, 0.98], [0.97, 0.982]]})
    single = make_run(tmp_path / "runs", "baseline", [0.95, 0.97])
    out = tmp_path / "out" / "both.md"
    result = runner.invoke(app, ["report", str(sweep_dir), str(single), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.count("## study") == 1 and text.count("## runs") == 1
    assert "| activation=relu" in text and "99.05 ± 0.07" in text
    assert "| baseline" in text and "| 97.00 " in text
    assert "Total parameters: 2,818" in text
    assert "The runs use different activations (`relu`, `tanh`)" in text
    figures = sorted(out.parent.glob("*.png"))
    assert [f.name for f in figures] == ["both-runs-confusion.png", "both-runs-curves.png",
                                         "both-study-confusion.png", "both-study-curves.png"]
    for figure in figures:
        with Image.open(figure) as image:
            image.verify()
    assert "Report:" in result.output and "activation=relu" in result.output


def test_a_folder_stands_for_the_sweeps_and_runs_inside_it(tmp_path):
    make_sweep(tmp_path / "runs" / "lr-sweep", "lr", {"0.1": 0.1}, {"0.1": [[0.9, 0.95]]})
    make_sweep(tmp_path / "runs" / "activation-sweep", "activation", {"tanh": "tanh"}, {"tanh": [[0.9, 0.96]]})
    make_run(tmp_path / "runs", "single", [0.9, 0.97])
    studies = results.load_studies([tmp_path / "runs"])
    assert [study.title for study in studies] == ["activation-sweep", "lr-sweep", "runs"]
    assert [len(study.runs) for study in studies] == [1, 1, 1]


def test_same_named_sweeps_get_their_own_figures_and_an_empty_sweep_is_said_so(tmp_path):
    first = make_sweep(tmp_path / "a" / "lr-sweep", "lr", {"0.1": 0.1}, {"0.1": [[0.9, 0.95]]})
    second = make_sweep(tmp_path / "b" / "lr-sweep", "lr", {"0.2": 0.2}, {"0.2": [[0.9, 0.93]]})
    empty = tmp_path / "c" / "empty-sweep"
    empty.mkdir(parents=True)
    (empty / "sweep.yaml").write_text(yaml.safe_dump({"axes": {"lr": [0.1]}, "points": [
        {"name": "lr=0.1,seed=0", "values": {"lr": 0.1}, "seed": 0, "status": "failed", "message": "no data"}]}))
    out = tmp_path / "r.md"
    result = runner.invoke(app, ["report", str(first), str(second), str(empty), "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = report.write(results.load_studies([first, second, empty]), out)
    assert sorted(p.name for p in written.figures) == [
        "r-lr-sweep-1-confusion.png", "r-lr-sweep-1-curves.png", "r-lr-sweep-confusion.png", "r-lr-sweep-curves.png"]
    assert "## empty-sweep\n\nNo run of this sweep has finished yet." in out.read_text()


def test_report_defaults_to_the_one_directory_given(tmp_path):
    sweep_dir = make_sweep(tmp_path / "lr-sweep", "lr", {"0.1": 0.1}, {"0.1": [[0.9, 0.95]]})
    assert runner.invoke(app, ["report", str(sweep_dir)]).exit_code == 0
    assert (sweep_dir / "report.md").is_file()


@pytest.mark.parametrize("setup, args, fragment", [
    (lambda root: None, ["missing"], "missing is not a folder"),
    (lambda root: (root / "empty").mkdir(), ["empty"], "neither a run directory"),
    (lambda root: make_run(root, "r", [0.9]), ["r", "-o", "report.txt"], "ending in .md"),
    (lambda root: (make_run(root, "r", [0.9]) / "summary.json").write_text("{"), ["r"], "cannot read"),
])
def test_report_mistakes_get_one_line_and_exit_2(tmp_path, setup, args, fragment):
    setup(tmp_path)
    result = runner.invoke(app, ["report", *[str(tmp_path / a) if not a.startswith("-") and "." not in a else a
                                             for a in args]])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output


COURSE_REPORT = Path(__file__).resolve().parents[1] / "examples" / "reference" / "course-report.yaml"


def test_the_course_reports_figures_load_and_match_the_studies_variants():
    from mnistres.reporting import reference

    figures = reference.load(COURSE_REPORT)
    assert figures.title == "the course report" and len(figures.entries) == 13
    sgd = figures.match({"optimizer": "sgd"})
    assert sgd.section == "3.2" and sgd.figure("val_acc", "final") == 0.9752 and sgd.figure("train_acc", "first") == 0.6648
    assert figures.match({"lr": 0.1}).figure("val_acc", "final") == 0.8956  # a float axis value matches
    assert figures.match({"batch_size": 32}).figure("val_acc", "first") == 0.9697
    assert figures.match({"activation": "sigmoid"}).figure("val_acc", "final") is None  # the report gives none
    assert figures.match({"activation": "gelu"}) is None and figures.match({"width": 8}) is None


def test_report_puts_the_reference_beside_the_runs_and_names_the_differences(tmp_path):
    # Two seeds per variant. adam: final val 0.9905-0.9910, around the report's 0.9908, and its first-epoch
    # figures too; sgd far below the report's 0.9752; rmsprop has no run here.
    make_sweep(tmp_path / "sweep", "optimizer", {"adam": "adam", "sgd": "sgd"}, {
        "adam": [[0.9450, 0.9905], [0.9460, 0.9910]],
        "sgd": [[0.3000, 0.4200], [0.3100, 0.4400]],
    })
    for run in (tmp_path / "sweep").glob("optimizer=adam*"):  # train accuracies that bracket the report's
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows[0]["train_acc"], rows[1]["train_acc"] = (0.9600, 0.9940) if "seed=0" in run.name else (0.9620, 0.9950)
        (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out" / "report.md"
    result = runner.invoke(app, ["report", str(tmp_path / "sweep"), "-o", str(output),
                                 "--reference", str(COURSE_REPORT)])
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert "## Beside the course report" in text
    assert "43.00 ± 1.41 / 97.52" in text  # sgd's final val acc: mean ± std of the two seeds / the report's
    assert "99.08 ± 0.04 / 99.08" in text  # adam's final val acc, mean ± std / the report's
    observed = text.split("## Observations", 1)[1]
    assert "optimizer=sgd differs from the course report (section 3.2) by more than our seeds' range" in observed
    assert "final val acc 42.00–44.00 % here against 97.52 %" in observed
    assert "lies within our runs' range for: optimizer=adam." in observed
    assert "optimizer=adam differs" not in observed
    # The terminal shows the same side by side, and the same sentences.
    assert "beside the course report" in result.output and "97.52" in result.output
    assert "optimizer=sgd differs from the course report" in " ".join(result.output.split())


def test_runs_set_up_otherwise_than_the_reference_are_said_not_to_be_like_for_like(tmp_path):
    # The course report trained 10 epochs at a constant rate (its `setup:`); runs of 2 epochs get the line,
    # runs of 10 do not.
    short = make_sweep(tmp_path / "short", "optimizer", {"adam": "adam"}, {"adam": [[0.94, 0.99]]}, schedule="constant")
    full = make_sweep(tmp_path / "full", "optimizer", {"adam": "adam"}, {"adam": [[0.94] + [0.99] * 9]},
                      schedule="constant")
    line = "Not like for like: these runs have epochs=2, the course report had epochs=10;"
    for sweep_dir, expected in ((short, True), (full, False)):
        output = sweep_dir / "r.md"
        result = runner.invoke(app, ["report", str(sweep_dir), "-o", str(output), "--reference", str(COURSE_REPORT)])
        assert result.exit_code == 0, result.output
        section, observed = output.read_text().split("## Beside the course report", 1)[1].split("## Observations", 1)
        assert (line in section and line in observed) is expected and ("like for like" in section) is expected
    # A key the study varies is what it compares, not a difference of set-up.
    course = reference.load(COURSE_REPORT)
    stored = RunConfig().to_dict()  # as a run's config.yaml holds it
    runs = [{**stored, "epochs": 2, "schedule": "cosine"}, {**stored, "epochs": 10, "schedule": "constant"}]
    assert course.unlike(runs, varied=[]) == [("epochs", ["2", "10"], "10"), ("schedule", ["constant", "cosine"], "constant")]
    assert course.unlike(runs, varied=["epochs"]) == [("schedule", ["constant", "cosine"], "constant")]
    # A setting an older config.yaml lacks counts as what such runs ran with (no average, no warps).
    older = {k: v for k, v in runs[1].items() if k not in ("ema", "rotate", "zoom", "translate", "elastic")}
    assert course.unlike([older], varied=[]) == []
    # The report trained on all 60,000 images, unaugmented, without extras: a quick study on a subset, or warped
    # digits, is not like for like.
    subset = [{**runs[1], "train_size": 1000}]
    assert course.unlike(subset, varied=[]) == [("train_size", ["1000"], "none")]
    warped = [{**runs[1], "rotate": 10.0, "label_smoothing": 0.1, "ema": 0.999}]
    assert course.unlike(warped, varied=[]) == [("rotate", ["10.0"], "0.0"), ("label_smoothing", ["0.1"], "0.0"),
                                                ("ema", ["0.999"], "0.0")]
    quick = make_sweep(tmp_path / "quick", "optimizer", {"adam": "adam"}, {"adam": [[0.94] + [0.99] * 9]},
                       schedule="constant", train_size=1000)
    result = runner.invoke(app, ["report", str(quick), "-o", str(quick / "r.md"), "--reference", str(COURSE_REPORT)])
    assert result.exit_code == 0, result.output
    assert ("Not like for like: these runs have train_size=1000, the course report had train_size=none (all images); "
            "the figures that depend on it compare runs set up differently.") in (quick / "r.md").read_text()


def test_a_variant_the_reference_only_notes_is_not_called_within_range(tmp_path):
    """The report names batches of 64 and 128 but gives no figure for them: nothing to agree with."""
    make_sweep(tmp_path / "sweep", "batch_size", {"32": 32, "64": 64}, {"32": [[0.95, 0.99]], "64": [[0.95, 0.99]]})
    result = runner.invoke(app, ["report", str(tmp_path / "sweep"), "-o", str(tmp_path / "r.md"),
                                 "--reference", str(COURSE_REPORT)])
    assert result.exit_code == 0, result.output
    observed = (tmp_path / "r.md").read_text().split("## Observations", 1)[1]
    assert "The course report gives no figure to compare for: batch_size=64." in observed
    assert "within our runs' range for: batch_size=64" not in observed
    assert "batch_size=32 differs from the course report (section 3.4)" in observed


def test_a_study_the_reference_does_not_cover_says_so(tmp_path):
    make_sweep(tmp_path / "sweep", "label_smoothing", {"0": 0.0, "0.1": 0.1}, {"0": [[0.9, 0.95]], "0.1": [[0.9, 0.96]]})
    output = tmp_path / "report.md"
    result = runner.invoke(app, ["report", str(tmp_path / "sweep"), "-o", str(output), "--reference", str(COURSE_REPORT)])
    assert result.exit_code == 0, result.output
    assert "No variant of this study has an entry in course-report.yaml" in output.read_text()
    assert "No variant matches an entry of the course report" in output.read_text()


@pytest.mark.parametrize("content, fragment", [
    ("- 1\n", "expected a mapping with title, source and variants"),
    ("title: t\nsource: s\nvariants: []\n", "variants must be a non-empty list"),
    ("title: t\nsource: s\nsetup: {colour: 1}\nvariants:\n  - {values: {lr: 0.1}, note: x}\n",
     "setup: 'colour' is not a setting"),
    ("title: t\nsource: s\nsetup: {epoch: 10}\nvariants:\n  - {values: {lr: 0.1}, note: x}\n",
     "setup: 'epoch' is not a setting (a key of RunConfig); did you mean 'epochs'?"),
    ("title: t\nsource: s\nsetup: [epochs]\nvariants:\n  - {values: {lr: 0.1}, note: x}\n", "setup must map"),
    ("title: t\nsource: s\nsetup: {epochs: ten}\nvariants:\n  - {values: {lr: 0.1}, note: x}\n",
     "setup: epochs='ten': expected a whole number"),
    ("title: t\nsource: s\nvariants:\n  - {values: {colour: red}, note: x}\n", "'colour' is not a setting"),
    ("title: t\nsource: s\nvariants:\n  - {values: {lr: 0.1}, val_acc: {final: 99.1}}\n",
     "val_acc.final=99.1 must be an accuracy between 0 and 1"),
    ("title: t\nsource: s\nvariants:\n  - {values: {lr: 0.1}, val_acc: {last: 0.9}}\n", "'last' is not one of first"),
    ("title: t\nsource: s\nvariants:\n  - {values: {lr: 0.1}}\n", "no figures and no note"),
    ("title: t\nsource: s\nvariants:\n  - {values: {lr: 0.1}, note: a}\n  - {values: {lr: 0.1}, note: b}\n",
     "two variants with the same settings (lr=0.1)"),
])
def test_a_bad_reference_file_is_one_line_and_exit_2(tmp_path, content, fragment):
    make_run(tmp_path, "r", [0.9])
    bad = tmp_path / "ref.yaml"
    bad.write_text(content)
    result = runner.invoke(app, ["report", str(tmp_path / "r"), "--reference", str(bad)])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "report.md").exists()


def test_figure_names_say_the_report_and_the_study_once(tmp_path):
    """`report runs/lrs -o lrs.md` drew lrs-lrs-curves.png; the sweep's own report, report-report-...."""
    make_sweep(tmp_path / "lrs", "lr", {"0.1": 0.1}, {"0.1": [[0.9, 0.95]]})
    result = runner.invoke(app, ["report", str(tmp_path / "lrs"), "-o", str(tmp_path / "lrs.md")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["lrs-confusion.png", "lrs-curves.png"]
    assert "(2 figures beside it)" in result.output
    single = make_run(tmp_path / "one", "alone", [0.9])
    (single / "summary.json").write_text(json.dumps({**json.loads((single / "summary.json").read_text()),
                                                     "confusion_matrix": []}))
    result = runner.invoke(app, ["report", str(single), "-o", str(tmp_path / "one" / "one.md")])
    assert result.exit_code == 0, result.output
    assert "(1 figure beside it)" in result.output  # was "1 figures"


@pytest.mark.parametrize("losses, scale", [((0.05, 0.03), "linear"), ((0.09, 0.05, 0.02), "log"),
                                           ((2.3, 0.5, 0.05, 0.003), "log")])
def test_loss_axes_get_labels_enough_to_read(tmp_path, losses, scale):
    """On a log axis over less than a decade, 1-2-5 labels left a single tick label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    run = make_run(tmp_path, "r", [0.9] * len(losses))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row, loss in zip(rows, losses):
        row["train_loss"] = row["val_loss"] = loss
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    [study] = results.load_studies([run])
    figure = figures.curves_figure(study)
    FigureCanvasAgg(figure).draw()
    loss_axis = figure.axes[2]
    assert loss_axis.get_yscale() == scale
    low, high = loss_axis.get_ylim()
    shown = [t for t in loss_axis.get_yticklabels() + loss_axis.get_yticklabels(minor=True)
             if t.get_text() and low <= t.get_position()[1] <= high]
    assert len(shown) >= 2, [t.get_text() for t in shown]


def test_best_epoch_of_seeds_that_agree_reads_as_one_seeds(tmp_path):
    """`best ep 2.0` where every seed's best epoch was 2, and one seed shows `2`."""
    sweep_dir = make_sweep(tmp_path / "s", "lr", {"0.1": 0.1, "0.01": 0.01},
                           {"0.1": [[0.9, 0.95], [0.91, 0.96]], "0.01": [[0.9, 0.95], [0.96, 0.91]]})
    [study] = results.load_studies([sweep_dir])
    rows = {row[0]: row for row in results.result_rows(study)}
    assert rows["lr=0.1"][4] == "2"  # both seeds: epoch 2
    assert rows["lr=0.01"][4] == "1.5"  # seeds disagree: their mean


def test_report_and_runs_call_a_killed_run_alike_and_an_empty_completed_run_is_said_apart(tmp_path):
    """A `running` summary with nobody holding the lock was "running" in report, "interrupted" in runs; a
    completed run without epochs counted in "runs 2" but in no mean, without a word."""
    make_run(tmp_path / "f", "killed", [0.9, 0.95], status="running")
    [study] = results.load_studies([tmp_path / "f"])
    assert study.runs[0].status == "interrupted"
    make_run(tmp_path / "g", "a", [0.9, 0.95])
    empty = make_run(tmp_path / "g", "b", [0.9, 0.95])
    (empty / "metrics.jsonl").write_text("")
    [study] = results.load_studies([tmp_path / "g"])
    [row] = results.result_rows(study)
    assert row[-1] == "1 completed, 1 completed without epochs (left out)"


def test_runs_on_two_datasets_are_reported_apart_with_a_note(tmp_path):
    """A folder of MNIST and Fashion-MNIST runs was compared as variants without a word, and "What was run"
    said `device ?` and `versions ; mnistres ...` for runs that recorded neither."""
    make_run(tmp_path / "mixed", "digits", [0.9, 0.95])
    make_run(tmp_path / "mixed", "clothes", [0.8, 0.85], dataset="fashion-mnist")
    bare = make_run(tmp_path / "mixed", "digits-old", [0.9, 0.96])
    summary = json.loads((bare / "summary.json").read_text())
    del summary["device"], summary["versions"]
    (bare / "summary.json").write_text(json.dumps(summary))
    result = runner.invoke(app, ["report", str(tmp_path / "mixed"), "-o", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    assert "Note: the runs given are on fashion-mnist and mnist: each dataset's are reported apart" in result.stderr
    text = (tmp_path / "r.md").read_text()
    assert "## runs on mnist" in text and "## runs on fashion-mnist" in text
    assert "device ?" not in text and "| versions | ;" not in text
    assert "cpu (1 thread) (not recorded for 1 run)" in text
