"""Tests of the mnistres-tensorboard plugin: a real run through mnistres's CLI, read back with TensorBoard's own reader.

Run with `python -m pytest plugins/mnistres-tensorboard/tests` once the plugin is installed
(`pip install ./plugins/mnistres-tensorboard`): the callback must arrive through the entry point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from typer.testing import CliRunner

from mnistres.cli import app
from mnistres.registry import callbacks
from mnistres.testing import write_synthetic_dataset

runner = CliRunner()


@pytest.fixture
def run_options(tmp_path, monkeypatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    write_synthetic_dataset(tmp_path / "data", train_images=200, test_images=50)
    return ["--data-dir", str(tmp_path / "data"), "--no-download", "--device", "cpu", "--epochs", "3",
            "--batch-size", "20", "--set", "width=8", "--set", "blocks=1", "--set", "precise_bn=40",
            "--threads", "1"]


def _events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_the_callback_arrives_through_the_entry_point():
    entry = callbacks.get("tensorboard")
    assert entry.source.startswith("mnistres-tensorboard ")  # "<distribution> <version>", not "built-in"
    assert entry.help and set(entry.options) == {"log_dir", "confusion"}


def test_a_run_writes_what_tensorboard_reads_back(run_options):
    result = runner.invoke(app, ["train", *run_options, "--name", "tb", "--callback", "tensorboard"])
    assert result.exit_code == 0, result.output
    history = [json.loads(line) for line in Path("runs/tb/metrics.jsonl").read_text().splitlines()]
    events = _events(Path("runs/tb/tensorboard"))
    for tag, key in (("accuracy/val", "val_acc"), ("accuracy/train", "train_acc"), ("loss/val", "val_loss"),
                     ("loss/train", "train_loss"), ("lr", "lr")):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2, 3], tag
        assert [e.value for e in logged] == pytest.approx([row[key] for row in history], rel=1e-6), tag
    summary = json.loads(Path("runs/tb/summary.json").read_text())
    for label, row in enumerate(summary["confusion_matrix"]):
        if sum(row):  # the last epoch's per-class accuracy is the summary's
            assert events.Scalars(f"val_acc_class/{label}")[-1].value == pytest.approx(row[label] / sum(row))
    assert [image.step for image in events.Images("confusion")] == [1, 2, 3]
    assert events.Images("confusion")[0].width > 100
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| lr | 0.001 |" in config_text and "| epochs | 3 |" in config_text
    # The HPARAMS tab's records: the run's settings, and the two accuracies as its metrics.
    hparams = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
               for tag, content in events.PluginTagToContent("hparams").items()}
    started = hparams["_hparams_/session_start_info"].session_start_info.hparams
    assert started["lr"].number_value == pytest.approx(0.001) and started["epochs"].number_value == 3
    assert started["optimizer"].string_value == "adam" and started["callbacks"].string_value.endswith("tensorboard")
    assert [m.name.tag for m in hparams["_hparams_/experiment"].experiment.metric_infos] == \
        ["hparam/final_val_acc", "hparam/best_val_acc"]
    final = events.Scalars("hparam/final_val_acc")
    assert final[-1].value == pytest.approx(history[-1]["val_acc"])
    assert events.Scalars("hparam/best_val_acc")[-1].value == pytest.approx(max(r["val_acc"] for r in history))


def test_log_dir_and_confusion_options(run_options, tmp_path):
    result = runner.invoke(app, ["train", *run_options, "--name", "elsewhere", "--epochs", "1",
                                 "--callback", f"tensorboard:log_dir={tmp_path / 'tb'},confusion=false"])
    assert result.exit_code == 0, result.output
    assert not Path("runs/elsewhere/tensorboard").exists()
    events = _events(tmp_path / "tb")
    assert len(events.Scalars("accuracy/val")) == 1 and "confusion" not in events.Tags()["images"]
    wrong = runner.invoke(app, ["train", *run_options, "--name", "bad", "--callback", "tensorboard:confuson=false"])
    assert wrong.exit_code == 2 and "confusion" in wrong.output  # an unknown option names the closest one


def test_a_resumed_run_continues_its_curves(run_options):
    """Interrupted in epoch 2, then resumed: one value per epoch, and the hparams cover all three."""
    from mnistres.api import Callback
    from mnistres.config import layered
    from mnistres.trainer import train

    class CtrlCInEpochTwo(Callback):
        def on_batch_end(self, trainer, step):
            if trainer.epoch == 2 and step == 3:
                raise KeyboardInterrupt

    options = dict(zip(run_options[::2], run_options[1::2]))
    config = layered({}, "test", {"data_dir": options["--data-dir"], "download": False, "device": "cpu",
                                  "epochs": 3, "batch_size": 20, "threads": 1, "name": "cut"},
                     ["width=8", "blocks=1", "precise_bn=40"], ["tensorboard"])
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=[CtrlCInEpochTwo()])
    resumed = runner.invoke(app, ["train", "--resume", "runs/cut"])
    assert resumed.exit_code == 0, resumed.output
    history = [json.loads(line) for line in Path("runs/cut/metrics.jsonl").read_text().splitlines()]
    events = _events(Path("runs/cut/tensorboard"))
    assert [e.step for e in events.Scalars("accuracy/val")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("accuracy/val")] == pytest.approx([r["val_acc"] for r in history])
    assert events.Scalars("hparam/best_val_acc")[-1].value == pytest.approx(max(r["val_acc"] for r in history))


def test_overwrite_starts_the_curves_anew(run_options):
    """--overwrite used to leave the earlier run's event files: TensorBoard then showed two runs as one."""
    first = runner.invoke(app, ["train", *run_options, "--name", "ow", "--callback", "tensorboard"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", *run_options, "--name", "ow", "--epochs", "2", "--callback", "tensorboard",
                                "--overwrite"])
    assert again.exit_code == 0, again.output
    assert [e.step for e in _events(Path("runs/ow/tensorboard")).Scalars("accuracy/val")] == [1, 2]
    plain = runner.invoke(app, ["train", *run_options, "--name", "ow", "--overwrite"])
    assert plain.exit_code == 0, plain.output
    assert not Path("runs/ow/tensorboard").exists()  # the earlier run's summary.json said it was there
