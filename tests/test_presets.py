"""Presets: named bundles of RunConfig values, layered beneath the config file, options and --set."""

from __future__ import annotations

import json

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from mnistres import config as config_module, registry
from mnistres.cli import app
from mnistres.errors import ConfigError, UnknownNameError
from mnistres.registry import presets

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_builds_a_config_and_trains(name, data_dir, tmp_path):
    from mnistres.trainer import train

    bundle = presets.get(name).options
    settings = config_module.layered({}, "test", preset=name)
    for key, value in bundle.items():  # every value of the preset lands in the config, typed
        assert settings.to_dict()[key] == config_module.coerce(key, value)
    # Its recipe, shrunk to the tiny data: a small model, one epoch, all of the few images.
    tiny = settings.replace(data_dir=str(data_dir), download=False, device="cpu", width=8, blocks=1, epochs=1,
                            train_size=None, precise_bn=64, threads=1, callbacks=(), out_dir=str(tmp_path), name=name)
    result = train(tiny, console=Console(quiet=True))
    assert result.status == "completed" and result.summary["train_images"] == 320


@pytest.mark.parametrize("name", ["fast", "best"])
def test_built_in_presets_are_recipes_not_a_different_model(name):
    settings = config_module.layered({}, "test", preset=name)
    defaults = config_module.RunConfig()
    assert (settings.width, settings.blocks, settings.activation) == (defaults.width, defaults.blocks,
                                                                      defaults.activation)
    assert settings != defaults


def test_later_layers_win_over_the_preset(tmp_path):
    fast = presets.get("fast").options
    settings = config_module.layered({}, "test", {"lr": "0.3"}, preset="fast")
    assert settings.lr == 0.3 and settings.batch_size == fast["batch_size"]
    settings = config_module.layered({"batch_size": 16}, "file.yaml", {}, ["epochs=3"], preset="fast")
    assert (settings.batch_size, settings.epochs, settings.schedule) == (16, 3, fast["schedule"])


def test_preset_in_a_config_file_and_on_the_command_line(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("preset: fast\nepochs: 4\n")
    settings = config_module.build(file)
    assert settings.epochs == 4 and settings.batch_size == presets.get("fast").options["batch_size"]
    # --preset replaces the file's preset; the file's own keys still win over it
    chosen = config_module.build(file, preset="fast:lr=0.05")
    assert chosen.lr == 0.05 and chosen.epochs == 4


@pytest.mark.parametrize("spec, fragment", [
    ("fats", "unknown preset 'fats'; did you mean 'fast'?"),
    ("fast:colour=red", "preset 'fast' has no option 'colour'"),
    ("fast:lr=quick", "lr='quick': expected a number"),
    ("fast:lr=-1", "lr=-1.0 is out of range"),
])
def test_bad_presets_are_one_line(spec, fragment, tmp_path):
    result = invoke("train", "--preset", spec, "--out-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_preset_value_that_clashes_with_a_typed_one_says_where_it_came_from(tmp_path):
    # --preset fast takes its windows 64 a step, which a batch of 48 does not divide.
    assert presets.get("fast").options["low_res_batch_size"] == 64
    result = invoke("train", "--preset", "fast", "--batch-size", "48", "--out-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("low_res_batch_size=64 is out of range: 0 (batch_size) or a multiple of batch_size=48, up to 65,536; "
            "the value comes from preset 'fast': replace it, e.g. --set low_res_batch_size=0") in result.output
    assert not (tmp_path / "runs").exists()
    # The fix it names works; a value the user typed gets no such hint, nor does a config without a preset.
    assert config_module.layered({}, "test", {"batch_size": 48}, ["low_res_batch_size=0"], preset="fast").batch_size == 48
    for layers in (({}, "test", {"batch_size": 48}, ["low_res_batch_size=64"], (), "fast"),
                   ({"low_res_batch_size": 64}, "run.yaml", {"batch_size": 48}, [], (), "fast"),
                   ({"low_res": 20, "low_res_batch_size": 64}, "run.yaml", {"batch_size": 48})):
        with pytest.raises(ConfigError, match="low_res_batch_size=64 is out of range") as caught:
            config_module.layered(*layers)
        assert "preset" not in str(caught.value)
    with pytest.raises(ConfigError, match="low_res_batch_size=64 is out of range") as caught:  # typed in the spec
        config_module.layered({}, "test", {"batch_size": 48}, preset="fast:low_res_batch_size=64")
    assert "comes from preset" not in str(caught.value)


def test_a_preset_subset_too_big_for_the_held_out_split_is_refused_before_any_data_loads(tmp_path):
    # fast trains on 44,000 images; holding out 30 % leaves 42,000. The check needs no dataset
    # (the data folder here is empty), and it says the 44,000 came from the preset.
    taken = presets.get("fast").options["train_size"]
    result = invoke("train", "--preset", "fast", "--val-split", "0.3", "--data-dir", str(tmp_path / "empty"),
                    "--out-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (f"train_size={taken:,} is more than the 42,000 training images available after holding out 18,000; "
            f"use --train-size 42000 or less; the value comes from preset 'fast': replace it, e.g. "
            f"--set train_size=none") in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()
    # The hint's fix works, and the same size typed by the user gets no hint.
    assert config_module.layered({}, "test", {"val_split": 0.3}, ["train_size=none"], preset="fast").train_size is None
    with pytest.raises(ConfigError, match="42,000 training images available") as caught:
        config_module.layered({}, "test", {"val_split": 0.3, "train_size": taken})
    assert "preset" not in str(caught.value)


def test_preset_is_not_a_set_key_nor_a_sweep_axis():
    with pytest.raises(ConfigError, match="chosen with --preset"):
        config_module.build(None, {}, ["preset=fast"])
    result = invoke("sweep", "preset", "fast", "default")
    assert result.exit_code == 2 and "chosen with --preset" in result.output


def test_sweep_applies_the_preset_to_every_point(tmp_path):
    from mnistres.sweep import plan as sweep

    plan = sweep.plan_from(None, [("lr", ["0.05", "0.1"])], {"out_dir": str(tmp_path)}, [], 1, preset="fast")
    batch = presets.get("fast").options["batch_size"]
    assert [p.config.lr for p in plan.points] == [0.05, 0.1]
    assert {p.config.batch_size for p in plan.points} == {batch}
    # ... and a sweep file may name it too
    file = tmp_path / "study.yaml"
    file.write_text("preset: fast\naxes:\n  lr: [0.1, 0.2]\n")
    plan = sweep.plan_from(file, [], {"out_dir": str(tmp_path)}, [], None)
    assert [(p.config.lr, p.config.batch_size) for p in plan.points] == [(0.1, batch), (0.2, batch)]


def test_train_with_a_preset_records_its_values(fast, tmp_path):
    preset = presets.get("fast").options
    # The preset trains on a subset larger than the tiny data: said in one line, exit 2.
    result = invoke("train", "--preset", "fast", *fast, "--out-dir", str(tmp_path), "--name", "p")
    assert result.exit_code == 2 and f"train_size={preset['train_size']:,} is more than the 320" in result.output
    result = invoke("train", "--preset", "fast", *fast, "--train-size", "256", "--out-dir", str(tmp_path), "--name", "p")
    assert result.exit_code == 0, result.output
    stored = yaml.safe_load((tmp_path / "p" / "config.yaml").read_text())
    assert stored["optimizer"] == preset["optimizer"] and stored["schedule"] == preset["schedule"]
    assert stored["low_res_mode"] == preset["low_res_mode"]
    assert stored["epochs"] == 2 and stored["train_size"] == 256  # the command line wins over the preset


def test_resume_takes_no_preset(tmp_path):
    result = invoke("train", "--resume", str(tmp_path), "--preset", "fast")
    assert result.exit_code == 2 and "--preset" in result.output


def test_plugins_lists_presets_with_their_values():
    result = invoke("plugins")
    assert result.exit_code == 0 and "presets" in result.output and "fast" in result.output
    described = json.loads(invoke("plugins", "--json").output)
    fast = next(e for e in described["registries"]["presets"] if e["name"] == "fast")
    assert fast["options"] == dict(presets.get("fast").options) and fast["source"] == registry.BUILT_IN


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(UnknownNameError, match="Available: .*fast"):
        presets.get("nope")
