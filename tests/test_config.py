"""RunConfig: layering, typing and validation, without torch."""

from __future__ import annotations

import pytest

from mnistres import config
from mnistres.core import yamlfile
from mnistres.config import RunConfig
from mnistres.errors import ConfigError


def test_defaults_are_the_reports_baseline():
    c = RunConfig()
    assert (c.activation, c.optimizer, c.lr, c.batch_size, c.epochs, c.seed) == ("relu", "adam", 0.001, 32, 10, 0)
    assert c.val_split == 0.0  # evaluated on the test set every epoch
    assert c.schedule == "cosine"  # our one change to the recipe; docs/guides/model-and-data.md says why
    assert "per_class_accuracy" in c.callbacks


def test_layers_later_wins(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.1\nepochs: 3\nbatch-size: 64\n")
    built = config.build(path, {"epochs": 4, "seed": None}, ["lr=1e-2"])
    assert built.lr == 0.01 and built.epochs == 4 and built.batch_size == 64 and built.seed == 0


@pytest.mark.parametrize("pair, key, value", [
    ("lr=1e-3", "lr", 0.001),
    ("epochs=3", "epochs", 3),
    ("train_size=1_000", "train_size", 1000),
    ("train_size=none", "train_size", None),
    ("augment=yes", "augment", True),
    ("channels-last=false", "channels_last", False),
    ("momentum=0.9", "momentum", 0.9),
    ("callbacks=progress,early_stopping:patience=2,min_delta=0.01", "callbacks",
     ("progress", "early_stopping:patience=2,min_delta=0.01")),
    ("callbacks=", "callbacks", ()),
])
def test_set_values_are_typed_by_key(pair, key, value):
    assert getattr(config.build(None, {}, [pair]), key) == value


@pytest.mark.parametrize("pair, fragment", [
    ("epochs=2.5", "expected a whole number"),
    ("lr=fast", "expected a number"),
    ("augment=maybe", "expected true or false"),
    ("batch_size=0", "batch_size=0"),
    ("amp=fp8", "amp='fp8' is not one of the choices: auto | off | bf16 | fp16"),
    (("low_res=20", "low_res_mode=zoom"), "low_res_mode='zoom' is not one of the choices: shrink | crop"),
    ("name=a/b", "name='a/b' cannot name a run directory: up to 200 letters"),
    ("label_smoothing=1", "label_smoothing=1.0"),
    ("momentum=1", "momentum=1.0"),
    ("lr=nan", "lr='nan': expected a finite number"),
    ("lr=inf", "lr='inf': expected a finite number"),
    ("weight_decay=1e400", "expected a finite number"),
    ("noequals", "key=value"),
    # Upper bounds: each of these used to start a run that crashed, hung or ran out of memory.
    ("threads=100000", "threads=100000 is out of range"),
    ("seed=9223372036854775000", "seed=9223372036854775000 is out of range"),
    ("seed=-1", "seed=-1 is out of range"),
    ("width=1000000", "width=1000000 is out of range"),
    ("blocks=100000000", "blocks=100000000 is out of range"),
    ("epochs=1e9", "epochs=1000000000 is out of range"),
    ("batch_size=10000000", "batch_size=10000000 is out of range"),
    ("train_size=" + "9" * 30, "expected a whole number of at most"),
    ("name=" + "x" * 300, "name='xxxxxxxx"),
    ("name=", "name='': expected a value, got empty text"),
    ("out_dir=", "out_dir='': expected a value"),
    ("data_dir=  ", "data_dir='  ': expected a value"),
    ("data_dir=a\0b", "is not a usable path: a folder path (this one holds a NUL character)"),
])
def test_bad_values_are_rejected_with_the_key(pair, fragment):
    with pytest.raises(ConfigError, match=None) as caught:
        config.build(None, {}, [pair] if isinstance(pair, str) else pair)
    assert fragment in str(caught.value)


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.build(path)


def test_yaml_wrong_type_names_key(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("epochs: {a: 1}\n")
    with pytest.raises(ConfigError, match="epochs="):
        config.build(path)
    path.write_text("epochs: [1, 2]\n")  # a list: a sweep was probably meant
    with pytest.raises(ConfigError, match=r"epochs is a list \(\[1, 2\]\).*mnistres sweep --config") as raised:
        config.build(path)
    assert raised.value.key == "epochs"
    path.write_text("callbacks: [progress]\n")  # the one setting that is a list
    assert config.build(path).callbacks == ("progress",)


def test_round_trip_through_yaml(tmp_path):
    import yaml

    original = config.build(None, {"activation": "gelu", "train_size": 100}, ["callbacks=progress"])
    restored = config.from_dict(yaml.safe_load(yamlfile.dump(original.to_dict())))
    assert restored == original


def test_dataset_names():
    assert config.build(None, {"dataset": "fashion-mnist"}).dataset == "fashion-mnist"
    assert config.build(None, {"dataset": "Fashion_MNIST"}).dataset == "fashion-mnist"
    with pytest.raises(ConfigError, match="fashion-mnist"):
        config.build(None, {"dataset": "cifar"})
