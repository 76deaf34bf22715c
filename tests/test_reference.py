"""The docs' reference pages are made from the code and stay so: regenerating them changes nothing, a
stale page is caught, and what the pages describe (the --json objects, metrics.jsonl's keys, the settings)
is what the commands really write."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mnistres import config
from mnistres.cli import app, reference
from mnistres.cli.json_outputs import JSON_OUTPUTS
from mnistres.runs import rundir, summary

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _generator(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnistres.cli.reference", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_reference_pages_regenerate_identically():
    """Made with the built-ins only, whatever plugins this environment has installed (extras' here)."""
    checked = _generator("--check", env={**os.environ, "MNISTRES_PLUGINS": "mnistres_extras"})
    assert checked.returncode == 0, checked.stderr + "\n(run: python -m mnistres.cli.reference)"
    for name in reference.PAGES:
        assert (ROOT / "docs" / "reference" / name).is_file(), name


def test_a_stale_page_is_named(tmp_path):
    assert _generator(str(tmp_path)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(reference.PAGES)
    page = tmp_path / "settings.md"
    page.write_text(page.read_text().replace("| `lr` |", "| `learning_rate` |"))
    checked = _generator("--check", str(tmp_path))
    assert checked.returncode == 1 and "settings.md is stale" in checked.stderr
    assert "commands.md" not in checked.stderr


def test_the_pages_cover_every_command_setting_and_entry():
    commands, settings = reference.commands_page(), reference.settings_page()
    for command in ("train", "sweep", "report", "eval", "predict", "export", "summary", "plugins", "runs"):
        assert f"## `mnistres {command}`" in commands
    assert "| `--batch-size INT` | `32` | Images per step. |" in commands and "| `--json` |" in commands
    for key in config.KEYS:
        assert f"| `{key}` |" in settings, key
    assert "| `momentum` | `FLOAT` | the optimizer's | Momentum," in settings
    assert "Accepts: from 0 up to (not including) 1. |" in settings
    assert "| `epochs` | `INT` | `10` | Passes over the training set. Accepts: from 1 to 10,000 (passes over the data). |" in settings
    plugins = reference.plugins_page()
    assert "| `adam` |" in plugins and "beta2: 0 <= x < 1" in plugins and "## executors" in plugins
    directory = reference.run_directory_page()
    for field in fields(summary.Summary):
        assert f"| `{field.name}` |" in directory


def test_every_range_in_the_settings_page_is_the_one_validate_applies():
    """A value just outside each stated float range is refused with the same words."""
    from mnistres.errors import ConfigError

    for key, outside in (("lr", 0.0), ("momentum", 1.0), ("ema", 1.0), ("rotate", 181.0), ("elastic_sigma", 0.1),
                         ("label_smoothing", 1.0), ("weight_decay", -1.0), ("val_split", 1.0)):
        with pytest.raises(ConfigError) as refused:
            config.from_dict({key: outside})
        assert config.range_of(key) in str(refused.value), key


def _keys_match(command: str, produced: dict) -> None:
    declared = JSON_OUTPUTS[command]
    always = {key for key, (_, when) in declared.items() if not when}
    assert always <= set(produced), f"{command} --json lacks {always - set(produced)}"
    assert set(produced) <= set(declared), f"{command} --json has undocumented {set(produced) - set(declared)}"


def _json(*args: str) -> dict:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_json_output_has_the_documented_keys(fast, data_dir, tmp_path):
    trained = _json("train", *fast, "--epochs", "1", "--name", "j", "--json")
    _keys_match("train", trained)
    best = str(Path(trained["run_dir"]) / "best.pt")
    swept = _json("sweep", "lr", "0.01", "0.02", *fast, "--epochs", "1", "--json")
    _keys_match("sweep", swept)
    _keys_match("report", _json("report", "runs/lr-sweep", "-o", str(tmp_path / "r.md"), "--json"))
    if importlib.util.find_spec("optuna"):
        space = tmp_path / "space.yaml"
        space.write_text("lr: {low: 0.005, high: 0.05, log: true}\n")
        _keys_match("tune", _json("tune", str(space), *fast, "--epochs", "1", "--trials", "2", "--jobs", "1", "--json"))
    _keys_match("summary", _json("summary", "--set", "width=8", "--set", "blocks=1", "--json"))
    _keys_match("plugins", _json("plugins", "--json"))
    _keys_match("runs", _json("runs", "--json"))
    _keys_match("runs tag", _json("runs", "tag", "runs/j", "checked", "--note", "seen", "--json"))
    _keys_match("runs rm", _json("runs", "rm", "runs/lr-sweep", "--dry-run", "--json"))
    _keys_match("runs gc", _json("runs", "gc", "--dry-run", "--json"))
    from mnistres.testing import write_synthetic_dataset

    fashion = write_synthetic_dataset(tmp_path / "fashion", folder="FashionMNIST")
    for extra in (["--data-dir", str(data_dir)], ["--data-dir", str(data_dir), "--mistakes", "4"],
                  ["--data-dir", str(fashion), "--dataset", "fashion-mnist"]):  # the last one has notes
        _keys_match("eval", _json("eval", best, "--device", "cpu", "--json", *extra))
    digit = tmp_path / "digit.png"
    image = Image.new("L", (28, 28), 0)
    image.paste(255, (12, 6, 16, 22))
    image.save(digit)
    _keys_match("predict", _json("predict", best, str(digit), "--json"))
    _keys_match("export", _json("export", best, "-o", str(tmp_path / "m.pt2"), "--data-dir", str(data_dir), "--json"))


def test_metrics_jsonl_holds_the_documented_keys_in_order(fast):
    assert runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "m"]).exit_code == 0
    line = json.loads(Path("runs/m/metrics.jsonl").read_text().splitlines()[0])
    documented = [key for key in rundir.METRICS_FIELDS if "..." not in key]
    per_class = [f"val_acc_class_{c}" for c in range(10)]
    assert list(line) == documented + per_class
