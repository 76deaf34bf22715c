"""The newcomer's mistakes, through the CLI: each gets one line naming what is wrong, exit code 2,
no traceback, and leaves no run directory or stray file behind."""

from __future__ import annotations

import gzip
import os
import random
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import write_dataset
from mnistres.train import checkpoint
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
    # Numbers that would exhaust the machine or overflow: refused before anything runs.
    (["--threads", "100000"], "threads=100000 is out of range"),
    (["--seed", "9223372036854775000"], "seed=9223372036854775000 is out of range"),
    (["--set", "width=1000000"], "width=1000000 is out of range"),
    (["--set", "blocks=100000000"], "blocks=100000000 is out of range"),
    (["--epochs", "1e12"], "epochs=1000000000000 is out of range"),
    (["--lr", "nan"], "lr='nan': expected a finite number"),
    (["--set", "momentum=inf"], "momentum='inf': expected a finite number"),
    # Options of registry entries are checked when the spec is read, not when (or after) it is used.
    (["--optimizer", "sgd:momentum=nan"], "option momentum='nan': expected a finite number"),
    (["--activation", "leaky_relu:negative_slope=nan"], "negative_slope='nan'"),
    (["--optimizer", "adam:beta2=1"], "beta2='1': expected 0 <= x < 1"),
    (["--schedule", "cosine:warmup_epochs=-1"], "warmup_epochs='-1'"),
    (["--schedule", "step:step_size=0"], "step_size='0'"),
    (["--callback", "early_stopping:monitor=val_accc"], "did you mean 'val_acc'"),
    (["--callback", "early_stopping:patience=99999999999999999999999"], "patience="),
    # Empty text is a mistake, not "the default".
    (["--name", ""], "name='': expected a value"),
    (["--out-dir", ""], "out_dir='': expected a value"),
    (["--data-dir", ""], "data_dir='': expected a value"),
])
def test_bad_run_options(fast, args, fragment):
    refused(["train", *fast, *args], fragment)


@pytest.mark.parametrize("text, fragment", [
    ("seed: [1, 2\n", "is not valid YAML (line"),
    ("seed: [1, 2]\n", "run.yaml: seed is a list ([1, 2]), and a run takes one value; for one run per value put "
                        "it under axes: (axes: {seed: [...]}) and run mnistres sweep --config "),
    ("label_smoothing: lots\n", "label_smoothing='lots'"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("learning_rate: 0.1\n", "unknown key 'learning_rate'"),
])
def test_bad_config_files(fast, tmp_path, text, fragment):
    config = tmp_path / "conf" / "run.yaml"
    config.parent.mkdir()
    config.write_text(text)
    refused(["train", *fast, "--config", str(config)], fragment)


BILLION_LAUGHS = "".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    + [f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")]
    + ["seed: *i\n"])


@pytest.mark.parametrize("text, fragment", [
    (BILLION_LAUGHS, "more than 100,000 values once its aliases"),  # 700 bytes; before: 40 s and 3.4 GB
    ("lr: 0.1\nepochs: 2\nlr: 0.2\n", "key 'lr' appears twice (lines 1 and 3)"),
    ("{lr: 0.1, lr: 0.2}\n", "key 'lr' appears twice (line 1)"),
    ("callbacks: &x [progress, *x]\n", "refers to itself"),
    ("[" * 500 + "]" * 500 + "\n", "nested"),
    ("name: " + "x" * 100_000 + "\n", "name='xxxxxx"),
])
def test_yaml_that_would_exhaust_the_machine_or_hide_a_mistake(fast, tmp_path, text, fragment):
    config = tmp_path / "conf" / "run.yaml"
    config.parent.mkdir()
    config.write_text(text)
    before = files_here()
    result = runner.invoke(app, ["train", *fast, "--config", str(config)])
    assert result.exit_code == 2 and fragment in result.output, result.output[:500]
    assert len(result.output) < 400, "an error message must not repeat a huge value"
    assert files_here() == before


def test_yaml_anchors_within_the_limit_still_work(fast, tmp_path):
    config = tmp_path / "conf" / "run.yaml"
    config.parent.mkdir()
    # One value named once and used twice: the ordinary use of an alias, far below the limit.
    config.write_text("label_smoothing: &small 0.05\nweight_decay: *small\nname: anchored\n")
    result = runner.invoke(app, ["train", *fast, "--config", str(config), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    stored = yaml.safe_load((Path("runs") / "anchored" / "config.yaml").read_text())
    assert stored["label_smoothing"] == stored["weight_decay"] == 0.05


def test_more_threads_than_the_machine_can_use(fast):
    from mnistres.train import devices

    refused(["train", *fast, "--threads", str(devices.max_threads() + 1)], "more than this machine can use")


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


def test_a_data_dir_one_level_off_names_the_right_one(fast, tmp_path):
    """`--data-dir data/MNIST` (or .../raw): said at once, downloads on or off; before, a download fetched a
    second copy into data/MNIST/MNIST/raw/."""
    import shutil

    root = write_dataset(tmp_path / "data")
    raw = root / "MNIST" / "raw"
    for given in (root / "MNIST", raw):
        for download in ("--download", "--no-download"):
            refused(["train", *fast, "--data-dir", str(given), download],
                    f"{raw} holds the mnist files, but --data-dir takes the folder that holds MNIST/raw/: "
                    f"give --data-dir {root}")
    flat = shutil.copytree(raw, tmp_path / "flat")
    refused(["train", *fast, "--data-dir", str(flat)], f"move them into {flat / 'MNIST' / 'raw'}/")
    # Fashion-MNIST's files have MNIST's names: MNIST's folders are not taken for misplaced Fashion-MNIST ones.
    for given in (root / "MNIST", raw):
        refused(["train", *fast, "--data-dir", str(given), "--dataset", "fashion-mnist", "--no-download"],
                f"fashion-mnist not found in {given / 'FashionMNIST' / 'raw'}")


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
    # Fixed garbage: random bytes now and then begin like an old-style pickle and are refused as unsafe instead.
    (lambda p: p.write_bytes(random.Random(0).randbytes(4096)), "not a readable checkpoint"),
    (lambda p: torch.save(torch.zeros(3), p), "not an mnistres checkpoint"),
    (lambda p: torch.save({"format": checkpoint.FORMAT, "format_version": 99, "config": {}, "model": {}}, p),
     "newer"),
    (lambda p: (checkpoint.save(p, {"config": {}, "model": {"w": torch.zeros(1000)}}),
                p.write_bytes(p.read_bytes()[:300])), "truncated"),
    (lambda p: torch.save({"format": checkpoint.FORMAT, "format_version": 1, "evil": Exploit()}, p),
     "safe load refuses"),
])
def test_bad_checkpoints(tmp_path, make, fragment):  # noqa: F811 - extended below
    path = tmp_path / "ckpts" / "model.pt"
    path.parent.mkdir()
    if make is not None:
        make(path)
    refused(["eval", str(path), "--device", "cpu"], fragment)
    assert not Path("pwned").exists(), "loading a checkpoint must never run code from it"


def crafted(path: Path, **changes) -> None:
    """A checkpoint of the right format whose fields were changed by hand."""
    from mnistres.config import RunConfig
    from mnistres.train.model import from_config

    document = {"config": RunConfig(width=8, blocks=1).to_dict(), "model": from_config(RunConfig(width=8, blocks=1)).state_dict(),
                "epoch": 1, "normalisation": [0.1307, 0.3081], **changes}
    for key, value in list(document.items()):
        if value is None:
            del document[key]
    checkpoint.save(path, document)


@pytest.mark.parametrize("changes, fragment", [
    ({"normalisation": [0.1307, 0.0]}, "normalisation [0.1307, 0.0] is not a (mean, standard deviation > 0) pair"),
    ({"normalisation": ["mean", "std"]}, "normalisation ['mean', 'std']"),
    ({"epoch": "one"}, "epoch 'one' is not an epoch number"),
    ({"model": {"w": "weights"}}, "its weights are not a mapping of names to tensors"),
    ({"config": ["not", "a", "mapping"]}, "its config is not a mapping"),
    ({"config": {"width": "wide", "blocks": 1}}, "width='wide': expected a whole number"),
    ({"config": {"width": 8, "blocks": 100_000_000}}, "blocks=100000000 is out of range"),
    ({"config": {"width": 8, "blocks": 1, "activation": "x" * 10_000}}, "needs activation 'xxxxx"),
])
def test_crafted_checkpoints(tmp_path, changes, fragment):
    path = tmp_path / "ckpts" / "model.pt"
    path.parent.mkdir()
    crafted(path, **changes)
    before = files_here()
    result = runner.invoke(app, ["eval", str(path), "--device", "cpu", "--no-download"])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and str(path) in result.output, result.output
    assert len(result.output) < 600 and "Traceback" not in result.output
    assert files_here() == before


# --- run files that were damaged, or written by someone else ------------------------------------

def report_run(root: Path) -> Path:
    """A run directory as `train` writes it, by hand (tests/test_report.py has the full builder)."""
    import json

    import yaml

    from mnistres.config import RunConfig

    run = root / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(RunConfig(name="r").to_dict()))
    row = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.4, "val_acc": 0.91, "lr": 0.001,
           "seconds": 2.0, "images_per_s": 100.0}
    (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    (run / "summary.json").write_text(json.dumps({"status": "completed", "final": row, "best": {"epoch": 1}}))
    return run


@pytest.mark.parametrize("damage, file, fragment", [
    (lambda r: (r / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": "high"}\n'), "metrics.jsonl", "lacks"),
    (lambda r: (r / "metrics.jsonl").write_text((r / "metrics.jsonl").read_text().replace("0.91", '"high"')),
     "metrics.jsonl", "val_acc 'high' is not a fraction"),
    (lambda r: (r / "metrics.jsonl").write_text("[1, 2]\n"), "metrics.jsonl", "expected an object"),
    (lambda r: (r / "metrics.jsonl").write_text("[" * 100_000 + "\n"), "metrics.jsonl", "not JSON"),
    (lambda r: (r / "summary.json").write_text("[]"), "summary.json", "expected an object"),
    (lambda r: (r / "summary.json").write_text('{"status": "done"}'), "summary.json", "status 'done' is none of"),
    (lambda r: (r / "summary.json").write_text('{"status": "completed", "confusion_matrix": [[1, "a"]]}'),
     "summary.json", "confusion_matrix is not a square table"),
    (lambda r: (r / "config.yaml").write_text("lr: {a: 1}\n"), "config.yaml", "'lr' holds {'a': 1}"),
    (lambda r: (r / "config.yaml").write_text("- a\n"), "config.yaml", "expected a mapping"),
])
def test_damaged_run_files_given_to_report(tmp_path, damage, file, fragment):
    run = report_run(tmp_path)
    damage(run)
    before = files_here()
    result = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "out" / "report.md")])
    assert result.exit_code == 2, result.output
    assert str(run / file) in result.output and fragment in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert files_here() == before


@pytest.mark.parametrize("points, fragment", [
    ([{"name": "../../elsewhere"}], "point name '../../elsewhere' is not a folder name"),
    ([{"name": ".."}], "point name '..' is not a folder name"),
    ([{"values": {}}], "has no name"),
    (["just text"], "has no name"),
    ("no list", "lists no points"),
])
def test_damaged_sweep_files_given_to_report(tmp_path, points, fragment):
    import yaml

    sweep = tmp_path / "runs" / "s"
    sweep.mkdir(parents=True)
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({"axes": {"lr": [0.1]}, "points": points}))
    result = runner.invoke(app, ["report", str(sweep)])
    assert result.exit_code == 2, result.output
    assert str(sweep / "sweep.yaml") in result.output and fragment in result.output, result.output


# --- the environment: places, encodings, variables, plugins that print -------------------------------


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "geteuid"), reason="chattr is Linux's")
def test_resume_into_a_folder_that_cannot_be_written_is_one_line(fast, tmp_path):
    """`train --resume` on a folder made immutable (chattr +i; as another user, a folder not theirs): a
    PermissionError traceback once the data had loaded. The place is now checked first, as a new run's is."""
    import json
    import shutil
    import subprocess

    trained = runner.invoke(app, ["train", *fast, "--name", "r"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(Path("runs/r/summary.json").read_text())
    Path("runs/r/summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    (Path("runs/r/metrics.jsonl")).write_text(Path("runs/r/metrics.jsonl").read_text().splitlines()[0] + "\n")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", "runs/r"], capture_output=True).returncode:
        pytest.skip("this filesystem does not take chattr +i")
    try:
        result = runner.invoke(app, ["train", "--resume", "runs/r"])
    finally:
        subprocess.run(["chattr", "-i", "runs/r"], check=True)
    assert result.exit_code == 2, result.output
    assert "cannot write in runs/r" in result.stderr and "Traceback" not in result.output


def test_an_out_dir_past_the_systems_path_limit_is_one_line(fast, tmp_path):
    """Each part under 255 bytes, the whole over 4096: `OSError: File name too long` from deep inside."""
    deep = str(tmp_path / "/".join(["d" * 200] * 22))
    for command in (["train", *fast, "--epochs", "1"], ["sweep", "lr", "0.01", *fast, "--epochs", "1"]):
        result = runner.invoke(app, [*command, "--out-dir", deep])
        assert result.exit_code == 2, result.output
        assert "with the files inside it must stay under this system's" in result.stderr
        assert "Traceback" not in result.output
    assert not Path(tmp_path / ("d" * 200)).exists()


def test_ascii_only_output_degrades_instead_of_failing(fast, tmp_path):
    """PYTHONIOENCODING=ascii: a UnicodeEncodeError after a completed run ("—" in its tables), and `runs`
    failed on a non-ASCII path."""
    import subprocess

    env = {**os.environ, "PYTHONIOENCODING": "ascii", "MNISTRES_DEBUG": ""}
    out_dir = tmp_path / "résultats"
    done = subprocess.run([sys.executable, "-m", "mnistres", "train", *fast, "--epochs", "1", "--name", "a",
                           "--out-dir", str(out_dir)], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    output = done.stdout.decode("ascii")  # nothing but ASCII
    assert "completed: val_acc" in output and "r?sultats" in output
    listed = subprocess.run([sys.executable, "-m", "mnistres", "runs", str(out_dir)], env=env, capture_output=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr.decode(errors="replace")
    assert "completed" in listed.stdout.decode("ascii")


def test_a_parent_pid_that_is_not_the_parent_is_one_line(fast):
    """MNISTRES_PARENT_PID (set by a sweep for its children) naming a dead process: `train` ended at once
    with exit 143 and no word."""
    import subprocess

    env = {**os.environ, "MNISTRES_PARENT_PID": "999999999", "MNISTRES_DEBUG": ""}
    done = subprocess.run([sys.executable, "-m", "mnistres", "train", *fast, "--epochs", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "MNISTRES_PARENT_PID=999999999 names a process that is not this one's parent" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not Path("runs").exists()


def test_json_output_stays_one_document_when_a_plugin_prints(fast, tmp_path):
    """A plugin that prints as it loads (or a callback as it runs) went into --json's stdout."""
    import json

    noisy = tmp_path / "noisy_plugin.py"
    noisy.write_text("print('hello from a plugin')\n")
    listed = runner.invoke(app, ["plugins", "--json", "--plugin", str(noisy)])
    assert listed.exit_code == 0, listed.output
    assert "activations" in json.loads(listed.stdout)["registries"] and "hello from a plugin" in listed.stderr
    trained = runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "j"])
    assert trained.exit_code == 0, trained.output
    image = tmp_path / "digit.npy"
    import numpy as np

    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    np.save(image, digit)
    louder = tmp_path / "louder_plugin.py"
    louder.write_text("print('louder')\n")
    predicted = runner.invoke(app, ["predict", "runs/j/best.pt", str(image), "--json", "--plugin", str(louder)])
    assert predicted.exit_code == 0, predicted.output
    json.loads(predicted.stdout)
    assert "louder" in predicted.stderr


def test_predict_names_a_missing_checkpoint_before_a_missing_image(tmp_path):
    result = runner.invoke(app, ["predict", "nothere.pt", "x.png"])
    assert result.exit_code == 2 and "checkpoint not found: nothere.pt" in result.stderr, result.output


def test_paths_with_a_newline_or_a_bidi_override_are_printed_escaped(fast, tmp_path):
    """A newline in a path printed raw starts a fake line of output; U+202E reverses what follows."""
    odd = tmp_path / "a\nb\u202ec"
    trained = runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "n", "--out-dir", str(odd)])
    assert trained.exit_code == 0, trained.output
    assert "\u202e" not in trained.stdout and f"run directory: {tmp_path}/a\\nb\\u202ec/n" in trained.stdout
    listed = runner.invoke(app, ["runs", str(odd)])
    assert listed.exit_code == 0 and "\u202e" not in listed.stdout and "a\\nb\\u202ec" in listed.stdout
    missing = runner.invoke(app, ["runs", str(tmp_path / "zz\nfake completed")])
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
