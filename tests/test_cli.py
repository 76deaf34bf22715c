"""The commands as a user runs them: help, exit codes, the train -> eval round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnistres import __version__
from mnistres.cli import app

runner = CliRunner()
COMMANDS = {
    "train": ["--epochs", "--batch-size", "--lr", "--activation", "--optimizer", "--schedule", "--device",
              "--seed", "--data-dir", "--dataset", "--out-dir", "--name", "--train-size", "--val-split", "--set",
              "--config", "--threads"],
    "eval": ["--per-class", "--confusion", "--dataset", "--data-dir", "--split", "--device", "--json"],
    "summary": ["--set", "--config", "--device"],
    "plugins": [],
    "sweep": ["--grid", "--seeds", "--jobs", "--devices", "--no-report", "--overwrite", "--config", "--epochs",
              "--batch-size", "--lr", "--device", "--data-dir", "--train-size", "--set", "--name", "--threads"],
    "report": ["--output", "--reference"],
}
COMMANDS["plugins"] = ["--json"]
COMMANDS["eval"] += ["--images", "--no-preprocess", "--mistakes", "--output"]
COMMANDS["runs"] = ["--status", "--json", "--csv", "--tag"]
COMMANDS["predict"] = ["--no-preprocess", "--top", "--explain", "--device", "--threads", "--json"]
COMMANDS["export"] = ["--output", "--data-dir", "--json"]
COMMANDS["train"] += ["--callback", "--preset", "--tag", "--note"]
COMMANDS["sweep"] += ["--callback", "--preset", "--tag", "--note"]
COMMANDS["serve"] = ["--checkpoint", "--host", "--port", "--open", "--max-upload", "--device", "--threads"]
COMMANDS["tune"] = ["--trials", "--jobs", "--executor", "--sampler", "--pruner", "--storage", "--seed", "--name",
                    "--epochs", "--train-size", "--val-split", "--threads", "--set", "--callback", "--preset", "--json",
                    "--tag", "--note"]
for _command, _options in COMMANDS.items():
    if _command != "runs":  # `runs` reads run files only: no registry name, so no plugin to load
        _options.append("--plugin")  # every other command can load a plugin


def invoke(*args: str):
    return runner.invoke(app, list(args))


def strict_json(text: str):
    """Parse as strict JSON: NaN or Infinity would make other readers fail."""
    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_every_option(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    for option in COMMANDS[command]:
        assert option in result.output, f"{command} --help lacks {option}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_reads_like_a_well_made_cli(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.output
    for clumsy in ("<bool>", "<str>", "<path>", "<int>", "<float>", "<list", "[default: (", "{", "...]...",
                   "VALUE...]"):
        assert clumsy not in text, f"{command} --help shows {clumsy!r}"
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    expected = {"eval": "CHECKPOINT", "predict": "CHECKPOINT IMAGE...", "export": "CHECKPOINT",
                "report": "PATH...", "sweep": "[PARAM] [VALUE]...", "runs": "[DIR]", "tune": "SPACE.yaml", "serve": "[RUNS_DIR]"}
    assert usage.strip().endswith(expected.get(command, "[OPTIONS]")), usage
    flag = next(line for line in text.splitlines() if "--help" in line)
    assert "Show this message and exit." in flag and "<" not in flag


def test_defaults_are_shown_as_users_type_them():
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for shown in ("[default: 10]", "[default: 32]", "[default: 0.001]", "[default: cosine]", "[default: runs]",
                  "[default: --download]"):
        assert shown in text, shown


def test_top_level_help_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    assert "--install-completion" in result.output and "<bool>" not in result.output
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"mnistres {__version__}"


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from mnistres.cli import app; "
            "codes = [CliRunner().invoke(app, [*c, '--help']).exit_code for c in ([], ['train'], ['sweep'], ['report'])]; "
            "assert codes == [0, 0, 0, 0], codes; print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "mnistres", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"mnistres {__version__}"


def test_train_then_eval_round_trip(fast):
    result = invoke("train", *fast, "--name", "trip")
    assert result.exit_code == 0, result.output
    run = Path("runs/trip")
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt"):
        assert (run / name).is_file(), name
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary files left behind"

    rows = [strict_json(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s",
                "eval_seconds", *(f"val_acc_class_{k}" for k in range(10))):
        assert key in rows[-1], key
    summary = strict_json((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["final"]["val_acc"] == rows[-1]["val_acc"]
    assert len(summary["per_class"]) == 10 and len(summary["confusion_matrix"]) == 10
    assert sum(map(sum, summary["confusion_matrix"])) == summary["val_images"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["width"] == 8 and saved["lr"] == 0.01 and saved["optimizer"] == "adam"
    assert "Training history" in result.output and "Per class" in result.output
    assert result.output.count("epoch 1/2") == 1  # one plain line per epoch off a terminal

    data_dir = fast[fast.index("--data-dir") + 1]
    result = invoke("eval", str(run / "best.pt"), "--per-class", "--confusion", "--data-dir", data_dir,
                    "--device", "cpu", "--no-download")
    assert result.exit_code == 0, result.output
    class_rows = [line for line in result.output.splitlines() if line.startswith("│") and "│" in line[1:]]
    assert len([r for r in class_rows if r.split("│")[1].strip() in map(str, range(10))]) == 20  # per-class + confusion
    assert "Confusion matrix" in result.output

    result = invoke("eval", str(run / "best.pt"), "--json", "--data-dir", data_dir, "--device", "cpu")
    assert result.exit_code == 0
    report = strict_json(result.stdout)  # nothing but JSON on stdout
    best_epoch = summary["best"]["epoch"]
    # eval rebuilds the model from the checkpoint alone and measures exactly what training logged
    assert report["accuracy"] == rows[best_epoch - 1]["val_acc"]
    assert report["images"] == summary["val_images"] and len(report["per_class"]) == 10


def test_yaml_config_and_set_precedence(fast, tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("epochs: 5\nbatch_size: 16\nname: from-yaml\n")
    result = invoke("train", "--config", str(config_file), *fast, "--set", "epochs=1")
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load(Path("runs/from-yaml/config.yaml").read_text())
    # fast passes --epochs 2 and --batch-size 32 (options beat YAML); --set epochs=1 beats both
    assert saved["epochs"] == 1 and saved["batch_size"] == 32


@pytest.mark.parametrize("args, fragment", [
    (["--activation", "rleu"], "did you mean 'relu'"),
    (["--optimizer", "adma"], "did you mean 'adam'"),
    (["--schedule", "cosin"], "did you mean 'cosine'"),
    (["--set", "callbacks=progres"], "did you mean 'progress'"),
    (["--dataset", "mnsit"], "did you mean 'mnist'"),
    (["--set", "lrr=0.1"], "did you mean 'lr'"),
    (["--set", "amp=bf61"], "did you mean 'bf16'"),
    (["--set", "low_res=20", "--set", "low_res_mode=crp"], "did you mean 'crop'"),
    # With nothing close, the sentence ends before the list of what there is.
    (["--activation", "zzzz"], "unknown activation 'zzzz'. Available: "),
    (["--set", "zzzz=1"], "unknown key 'zzzz' in --set. Keys: "),
    (["--dataset", "zzzz"], "unknown dataset 'zzzz'. Available: "),
    (["--train-size", "999999"], "train_size=999,999"),
    (["--batch-size", "100000"], "batch_size=100000"),
    (["--optimizer", "sgd:nesterovv=true"], "has no option 'nesterovv'"),
    (["--optimizer", "adam", "--set", "momentum=0.9"], "does not apply to optimizer 'adam'"),
])
def test_user_mistakes_get_one_line_and_exit_2(fast, args, fragment):
    # Closest-match hints and option checks; tests/test_bad_input.py holds the full battery.
    result = invoke("train", *fast, *args, "--name", "bad")
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path("runs/bad").exists(), "a failed start must not leave a run directory"


def test_unavailable_cuda(fast):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("train", *fast, "--device", "cuda", "--name", "bad")
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr and "cpu" in result.stderr


def test_missing_data_offline_names_the_folder_and_files(tmp_path, fast):
    empty = tmp_path / "nodata"
    args = [a if a != fast[1] else str(empty) for a in fast]
    result = invoke("train", *args, "--name", "bad")
    assert result.exit_code == 2
    message = result.stderr
    assert str(empty / "MNIST" / "raw") in message
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert stem in message
    assert not Path("runs/bad").exists()


def test_failed_download_is_one_line(tmp_path, fast, monkeypatch):
    import torchvision

    class Offline:  # like torchvision without network: makes its folders, starts a file, then fails
        def __init__(self, root, **kwargs):
            (Path(root) / "MNIST" / "raw").mkdir(parents=True)
            (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n"
                               "Tried https://mirror.example/, got:\n"
                               "<urlopen error [Errno -3] Temporary failure in name resolution>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    args = [a if a != fast[1] else str(tmp_path / "cache" / "deep" / "nodata") for a in fast]
    args.remove("--no-download")
    result = invoke("train", *args)
    assert result.exit_code == 2, result.output
    assert ("download failed: Error downloading train-images-idx3-ubyte.gz: urlopen error [Errno -3] Temporary "
            "failure in name resolution") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists(), "a failed download must leave no file or folder behind"


def test_existing_run_is_not_overwritten_silently(fast):
    assert invoke("train", *fast, "--epochs", "1", "--name", "again").exit_code == 0
    before = Path("runs/again/summary.json").read_text()
    result = invoke("train", *fast, "--epochs", "1", "--name", "again")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert Path("runs/again/summary.json").read_text() == before
    result = invoke("train", *fast, "--epochs", "1", "--name", "again", "--overwrite", "--seed", "3")
    assert result.exit_code == 0
    assert Path("runs/again/summary.json").read_text() != before


def test_divergence_is_a_result_not_a_crash(fast):
    result = invoke("train", *fast, "--optimizer", "sgd", "--lr", "1e6", "--name", "boom")
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("runs/boom/summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["diverged_at"]["epoch"] == 1 and summary["diverged_at"]["step"] >= 1
    assert "NaN/inf" in result.output and "lower --lr" in result.output


@pytest.mark.parametrize("content", [None, b"", b"\x00not a checkpoint\xff" * 50])
def test_eval_bad_checkpoint(tmp_path, content):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    result = invoke("eval", str(path), "--device", "cpu")
    assert result.exit_code == 2
    assert str(path) in result.stderr and "Traceback" not in result.output


def test_summary_prints_the_layer_table():
    result = invoke("summary", "--device", "cpu")
    assert result.exit_code == 0, result.output
    for layer in ("stem.0 (Conv2d)", "blocks.2.act2 (ReLU (after add))", "head.4 (Linear)"):
        assert layer in result.output
    assert "(None, 64, 7, 7)" in result.output and "(None, 10)" in result.output
    # stem conv 7*7*64 + BN 2*64; 3 blocks of 2 convs 3*3*64*64 + 2 BNs; dense 64*64+64; dense 64*10+10
    expected = 7 * 7 * 64 + 2 * 64 + 3 * (2 * 9 * 64 * 64 + 2 * 2 * 64) + (64 * 64 + 64) + (64 * 10 + 10)
    assert f"Total params: {expected:,}" in result.output.replace("\n", " ")
    small = invoke("summary", "--set", "width=8", "--set", "blocks=1", "--activation", "tanh")
    assert small.exit_code == 0 and "blocks.1" not in small.output and "Tanh" in small.output


def test_plugins_shows_option_values_as_the_cli_takes_them():
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"})
    assert "nesterov=false" in result.output and "fused=true" in result.output
    assert "True" not in result.output and "False" not in result.output
    assert "momentum=0.0 (0 to 1)" in result.output  # and what each option accepts


def test_eval_says_which_images_it_scored_and_offers_the_runs_own(fast):
    args = [*fast, "--train-size", "64", "--val-split", "0.25", "--name", "small"]
    assert invoke("train", *args).exit_code == 0
    data_dir = fast[fast.index("--data-dir") + 1]
    best = "runs/small/best.pt"
    whole = invoke("eval", best, "--split", "train", "--data-dir", data_dir)
    assert whole.exit_code == 0, whole.output
    assert "all 320 images of the training file" in whole.output
    assert "this run trained on only some of them; --split run-train scores those" in whole.output
    own = invoke("eval", best, "--split", "run-train", "--data-dir", data_dir)
    assert own.exit_code == 0 and "the 64 training images this run trained on" in own.output
    held = invoke("eval", best, "--split", "run-val", "--data-dir", data_dir, "--json")
    report = strict_json(held.stdout)
    assert report["images"] == 80 and report["scored"] == "the 80 held-out images this run validated on"
    summary = json.loads(Path("runs/small/summary.json").read_text())
    assert report["accuracy"] == summary["best"]["val_acc"]  # the very images training validated on
    bad = invoke("eval", best, "--split", "validation")
    assert bad.exit_code == 2 and "expected test, train, run-train, run-val" in bad.output


def test_eval_on_another_dataset_says_so(fast, tmp_path):
    from conftest import write_dataset

    assert invoke("train", *fast, "--name", "digits").exit_code == 0
    fashion = write_dataset(tmp_path / "fashion", folder="FashionMNIST")
    result = invoke("eval", "runs/digits/best.pt", "--dataset", "fashion-mnist", "--data-dir", str(fashion))
    assert result.exit_code == 0, result.output
    assert "trained on mnist, not fashion-mnist: expect an accuracy near chance" in result.output
    as_json = strict_json(invoke("eval", "runs/digits/best.pt", "--dataset", "fashion-mnist", "--data-dir",
                                 str(fashion), "--json").stdout)
    assert as_json["trained_on"] == "mnist" and as_json["notes"]


def test_piped_train_output_keeps_every_column(fast):
    result = subprocess.run([sys.executable, "-m", "mnistres", "train", *fast, "--name", "piped"],
                            capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "train_loss" in line and "┃" in line)
    for column in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "img/s"):
        assert column in header, header  # at 80 columns the lr column was cut
    assert "(validation on the test set)" in result.stdout
    assert "completed: val_acc " in result.stdout and " on the test set (best " in result.stdout


def test_an_interrupted_run_says_how_to_go_on(fast):
    from mnistres.callbacks import Callback
    from mnistres.config import build
    from mnistres.core.interrupts import Interrupted
    from mnistres.trainer import train

    class StopAt(Callback):
        def __init__(self, epoch):
            self.epoch = epoch

        def on_epoch_begin(self, trainer, epoch):
            if epoch == self.epoch:
                raise KeyboardInterrupt

    options = dict(zip(fast[::2], fast[1::2]))
    config = build(None, {"data_dir": options["--data-dir"], "device": "cpu", "download": False, "epochs": 3,
                          "threads": 1, "name": "early"}, ["width=8", "blocks=1", "precise_bn=64"])
    with pytest.raises(Interrupted, match="no epoch had finished"):
        train(config, extra_callbacks=[StopAt(1)])
    again = invoke("train", *fast, "--name", "early")
    assert again.exit_code == 2 and "already holds an interrupted run" in again.output
    assert "before its first epoch ended, so there is nothing to resume: --overwrite starts it again" in again.output
    assert "--resume" not in again.output
    with pytest.raises(Interrupted, match=r"`mnistres train --resume runs/late` continues it"):
        train(config.replace(name="late"), extra_callbacks=[StopAt(2)])
    offer = invoke("train", *fast, "--name", "late")
    assert "already holds an interrupted run" in offer.output and "mnistres train --resume runs/late" in offer.output


def test_plugins_lists_every_builtin():
    result = invoke("plugins")
    assert result.exit_code == 0
    for name in ("relu", "mish", "sgd", "radam", "onecycle", "per_class_accuracy", "early_stopping"):
        assert name in result.output
    assert "built-in" in result.output


def test_debug_shows_the_traceback(fast, monkeypatch):
    monkeypatch.setenv("MNISTRES_DEBUG", "0")  # restored after the test; --debug sets it to 1
    result = invoke("--debug", "train", *fast, "--lr", "-1")
    from mnistres.errors import ConfigError

    assert isinstance(result.exception, ConfigError) and result.exit_code != 2


def test_piped_plugins_and_runs_have_no_padded_lines_and_plugins_fits_160_columns(fast):
    """Piped, `plugins` printed tables 400+ columns wide and headings padded with hundreds of spaces."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    listed = subprocess.run([sys.executable, "-m", "mnistres", "plugins"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 160 and not any(line.endswith(" ") for line in lines)
    assert "relu" in listed.stdout
    assert runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "r"]).exit_code == 0
    runs = subprocess.run([sys.executable, "-m", "mnistres", "runs"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert runs.returncode == 0 and runs.stdout.splitlines()[0] == "1 run under runs, newest first", runs.stdout


def test_every_reporting_command_prints_one_json_document(fast, tmp_path):
    """`train`, `sweep`, `report` and `summary` had no --json; their human output now goes to stderr."""
    trained = runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "j", "--json"])
    assert trained.exit_code == 0, trained.output
    outcome = json.loads(trained.stdout)
    assert outcome["status"] == "completed" and outcome["run_dir"] == "runs/j" and len(outcome["history"]) == 1
    assert "Training history" in trained.stderr
    swept = runner.invoke(app, ["sweep", "lr", "0.01", "0.02", *fast, "--epochs", "1", "--json"])
    assert swept.exit_code == 0, swept.output
    points = json.loads(swept.stdout)
    assert [p["status"] for p in points["points"]] == ["completed", "completed"]
    assert points["report"] == "runs/lr-sweep/report.md" and len(points["results"]["rows"]) == 2
    reported = runner.invoke(app, ["report", "runs/lr-sweep", "-o", str(tmp_path / "r.md"), "--json"])
    assert reported.exit_code == 0, reported.output
    assert json.loads(reported.stdout)["studies"][0]["rows"][0][0] == "lr=0.01"
    layers = runner.invoke(app, ["summary", "--set", "width=8", "--set", "blocks=1", "--json"])
    assert layers.exit_code == 0, layers.output
    described = json.loads(layers.stdout)
    assert described["totals"] and described["layers"][0]["output_shape"]


def test_eval_mistakes_with_json_draws_only_where_o_says(fast, tmp_path):
    assert runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "m"]).exit_code == 0
    data = fast[fast.index("--data-dir") + 1]
    listed = runner.invoke(app, ["eval", "runs/m/best.pt", "--data-dir", data, "--no-download", "--mistakes", "4",
                                 "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["mistakes"]["figure"] is None and not Path("mistakes.png").exists()
    drawn = runner.invoke(app, ["eval", "runs/m/best.pt", "--data-dir", data, "--no-download", "--mistakes", "4",
                                "--json", "-o", "grid.png"])
    assert drawn.exit_code == 0 and json.loads(drawn.stdout)["mistakes"]["figure"] == "grid.png"
    assert Path("grid.png").is_file()


def test_unset_settings_read_as_what_they_mean_in_tables(fast):
    for name, extra in (("a", []), ("b", ["--train-size", "64"])):
        assert runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", name, *extra]).exit_code == 0
    listed = runner.invoke(app, ["runs"])
    assert listed.exit_code == 0 and " all " in listed.stdout and " none " not in listed.stdout, listed.stdout
