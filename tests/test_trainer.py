"""The training loop through the library API: exact metrics, hooks, determinism, stopping."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from mnistres.callbacks import Callback
from mnistres.config import RunConfig
from mnistres.trainer import train


def config(data_dir, tmp_path, **changes):
    base = dict(data_dir=str(data_dir), download=False, device="cpu", epochs=2, width=8, blocks=1, lr=0.01,
                precise_bn=64, threads=1, callbacks=("per_class_accuracy",), out_dir=str(tmp_path / "runs"),
                name="run")
    return RunConfig(**{**base, **changes})


def quiet(tmp_path):
    return Console(file=open(tmp_path / "console.txt", "w"))


class Recorder(Callback):
    """Records every hook, and each step's loss and batch size, to check the epoch log against."""

    def __init__(self):
        self.calls, self.losses, self.sizes = [], [], []

    def on_train_begin(self, trainer):
        self.calls.append("train_begin")

    def on_epoch_begin(self, trainer, epoch):
        self.calls.append(f"epoch_begin {epoch}")
        self.losses.append([])

    def on_batch_end(self, trainer, step):
        self.losses[-1].append((float(trainer.batch_loss), trainer.seen))

    def on_epoch_end(self, trainer, epoch, logs):
        self.calls.append(f"epoch_end {epoch}")
        logs["recorded"] = epoch * 10

    def on_train_end(self, trainer, status):
        self.calls.append(f"train_end {status}")


def test_hooks_order_and_exact_epoch_loss(data_dir, tmp_path):
    recorder = Recorder()
    result = train(config(data_dir, tmp_path, batch_size=48), console=quiet(tmp_path), extra_callbacks=[recorder])
    assert recorder.calls == ["train_begin", "epoch_begin 1", "epoch_end 1", "epoch_begin 2", "epoch_end 2",
                              "train_end completed"]
    for epoch_losses, logs in zip(recorder.losses, result.history):
        sizes = [seen - previous for (_, seen), previous in zip(epoch_losses, [0] + [s for _, s in epoch_losses])]
        assert sizes[-1] != sizes[0], "the data size should leave a smaller last batch"
        weighted = sum(loss * n for (loss, _), n in zip(epoch_losses, sizes)) / sum(sizes)
        assert logs["train_loss"] == pytest.approx(weighted, rel=1e-5)
        plain_mean = sum(loss for loss, _ in epoch_losses) / len(epoch_losses)
        assert logs["train_loss"] != pytest.approx(plain_mean, rel=1e-7)
        assert logs["recorded"] == logs["epoch"] * 10  # callbacks add keys to the log
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["recorded"] == 20


def test_same_seed_same_metrics(data_dir, tmp_path):
    timing = ("seconds", "images_per_s", "eval_seconds")
    runs = [train(config(data_dir, tmp_path, name=f"r{i}", augment=True), console=quiet(tmp_path)) for i in range(2)]
    strip = [[{k: v for k, v in row.items() if k not in timing} for row in run.history] for run in runs]
    assert strip[0] == strip[1]
    other = train(config(data_dir, tmp_path, name="r3", seed=1), console=quiet(tmp_path))
    assert other.history[0]["train_loss"] != runs[0].history[0]["train_loss"]


def test_per_class_accuracy_matches_confusion(data_dir, tmp_path):
    result = train(config(data_dir, tmp_path), console=quiet(tmp_path))
    final = result.history[-1]
    for row in result.summary["per_class"]:
        assert final[f"val_acc_class_{row['class']}"] == row["accuracy"]
    assert sum(r["support"] for r in result.summary["per_class"]) == result.summary["val_images"]


def test_early_stopping_ends_the_run(data_dir, tmp_path):
    result = train(config(data_dir, tmp_path, epochs=8, lr=1e-7,
                          callbacks=("early_stopping:patience=1,min_delta=0.5",)), console=quiet(tmp_path))
    assert result.status == "completed" and len(result.history) == 2
    assert "early stopping" in result.message and result.summary["epochs_completed"] == 2


def test_best_checkpoint_holds_the_best_epoch(data_dir, tmp_path):
    result = train(config(data_dir, tmp_path, epochs=3), console=quiet(tmp_path))
    best = torch.load(result.run_dir / "best.pt", weights_only=True)
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert best["epoch"] == result.summary["best"]["epoch"] and last["epoch"] == 3
    assert best["metrics"]["val_acc"] == max(row["val_acc"] for row in result.history)
    assert best["config"]["width"] == 8


def test_onecycle_and_label_smoothing_run(data_dir, tmp_path):
    result = train(config(data_dir, tmp_path, schedule="onecycle", label_smoothing=0.1, optimizer="sgd",
                          momentum=0.9), console=quiet(tmp_path))
    assert result.status == "completed"
    rates = [row["lr"] for row in result.history]
    assert rates[0] != rates[1]


def test_bf16_autocast_path_runs_on_cpu(data_dir, tmp_path):
    result = train(config(data_dir, tmp_path, amp="bf16", channels_last=False), console=quiet(tmp_path))
    assert result.status == "completed"
    assert all(0.0 <= row["val_acc"] <= 1.0 for row in result.history)


def test_the_progress_bar_says_when_it_evaluates(data_dir, tmp_path):
    # In a terminal the bar is full when the epoch's steps are done; what follows is the evaluation.
    import io

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160)
    result = train(config(data_dir, tmp_path, callbacks=("progress",)), console=console)
    assert result.status == "completed"
    assert "evaluating on 160 test images..." in screen.getvalue()


def test_summary_records_what_the_numbers_depend_on(data_dir, tmp_path):
    result = train(config(data_dir, tmp_path), console=quiet(tmp_path))
    numerics = json.loads((result.run_dir / "summary.json").read_text())["numerics"]
    assert numerics["device"] == "cpu" and numerics["threads"] == 1 and numerics["precision"] == "float32"
    assert numerics["torch"] == torch.__version__ and numerics["cpu_capability"]


def test_the_weight_average_follows_its_rule():
    from torch import nn

    from mnistres.train.ema import WARMUP, WeightAverage

    model = nn.BatchNorm1d(3)
    average = WeightAverage(model, decay=0.9)
    expected = model.weight.detach().clone()
    for step in range(1, 30):
        with torch.no_grad():
            model.weight.add_(torch.randn(3))
            model.running_mean.add_(1.0)
        average.update(step)
        decay = min(0.9, (1 + step) / (WARMUP + step))
        expected = decay * expected + (1 - decay) * model.weight.detach()
        torch.testing.assert_close(average.model.weight, expected)
        torch.testing.assert_close(average.model.running_mean, model.running_mean)  # copied, not averaged
    assert not any(p.requires_grad for p in average.model.parameters())


def test_ema_is_what_is_evaluated_and_saved_and_resumes_exactly(data_dir, tmp_path):
    from typer.testing import CliRunner

    from mnistres.train.checkpoint import load
    from mnistres.cli import app
    from mnistres.trainer import resume_config
    from test_resume import InterruptAt, metrics

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=3, batch_size=32, width=8,
                       blocks=1, precise_bn=64, threads=1, lr=0.01, ema=0.9, out_dir=str(tmp_path))
    whole = train(config.replace(name="whole"))
    document = load(whole.run_dir / "last.pt")
    assert not all(torch.equal(document["model"][k], document["trained_model"][k]) for k in document["model"])
    evaluated = CliRunner().invoke(app, ["eval", str(whole.run_dir / "last.pt"), "--data-dir", str(data_dir),
                                         "--device", "cpu", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["accuracy"] == whole.history[-1]["val_acc"]

    with pytest.raises(KeyboardInterrupt):
        train(config.replace(name="cut"), extra_callbacks=[InterruptAt(epoch=2, step=3)])
    train(resume_config(tmp_path / "cut"), resume=True)
    assert metrics(tmp_path / "cut") == metrics(whole.run_dir)
    resumed = load(tmp_path / "cut" / "last.pt")
    for key in ("model", "trained_model"):
        assert all(torch.equal(resumed[key][k], document[key][k]) for k in document[key]), key


class InputSides(Callback):
    """The side of the images each training step fed to the model, per epoch."""

    def __init__(self):
        self.sides, self.handle = [], None

    def on_train_begin(self, trainer):
        self.handle = trainer.model.register_forward_pre_hook(
            lambda module, inputs: self.sides[-1].append(inputs[0].shape[-1]) if module.training else None)

    def on_epoch_begin(self, trainer, epoch):
        self.sides.append([])

    def on_train_end(self, trainer, status):
        self.handle.remove()


def assert_interrupted_and_resumed_like(base, whole, tmp_path):
    """Ctrl-C at the second step of epoch 2, then --resume: the same metrics and weights as `whole`, run in one go."""
    from test_resume import InterruptAt, metrics

    from mnistres.train.checkpoint import load
    from mnistres.trainer import resume_config

    with pytest.raises(KeyboardInterrupt):
        train(base.replace(name="cut"), extra_callbacks=[InterruptAt(epoch=2, step=2)])
    train(resume_config(tmp_path / "runs" / "cut"), resume=True)
    assert metrics(tmp_path / "runs" / "cut") == metrics(whole.run_dir)
    resumed, document = load(tmp_path / "runs" / "cut" / "last.pt"), load(whole.run_dir / "last.pt")
    assert all(torch.equal(resumed["model"][k], document["model"][k]) for k in document["model"])


@pytest.mark.parametrize("mode", ["shrink", "crop"])
def test_low_res_steps_come_first_and_resume_exactly(data_dir, tmp_path, mode):
    from test_resume import metrics

    from mnistres.config import from_dict
    from mnistres.errors import ConfigError

    for bad, key in (({"low_res": 4}, "low_res"), ({"low_res": 28}, "low_res"),
                     ({"epochs": 2, "low_res": 14, "low_res_epochs": 2}, "low_res_epochs"),
                     ({"low_res_epochs": -0.5}, "low_res_epochs"), ({"low_res_mode": "squash"}, "low_res_mode")):
        with pytest.raises(ConfigError, match=key):
            from_dict(bad)
    # precise_bn off: its refresh passes (at full size, the size evaluated) would be recorded too.
    base = config(data_dir, tmp_path, epochs=3, batch_size=32, low_res=14, low_res_epochs=1.5, low_res_mode=mode,
                  precise_bn=0)
    sides = InputSides()
    whole = train(base.replace(name="whole"), extra_callbacks=[sides])
    steps = len(sides.sides[0])
    assert sides.sides == [[14] * steps, [14] * (round(1.5 * steps) - steps) + [28] * (2 * steps - round(1.5 * steps)),
                           [28] * steps]
    plain = train(base.replace(name="plain", low_res=0))
    assert metrics(plain.run_dir) != metrics(whole.run_dir)
    if mode == "crop":  # windows, not the shrunk whole
        assert metrics(train(base.replace(name="shrunk", low_res_mode="shrink")).run_dir) != metrics(whole.run_dir)
    # Stopped in the middle of the low-resolution steps, the run goes on where it was, on both sides of the switch.
    assert_interrupted_and_resumed_like(base, whole, tmp_path)


class InputShapes(InputSides):
    """(images, side) of each training step's inputs, per epoch."""

    def on_train_begin(self, trainer):
        self.handle = trainer.model.register_forward_pre_hook(
            lambda module, inputs: self.sides[-1].append(tuple(inputs[0].shape[::3])) if module.training else None)


def test_low_res_batch_size_takes_several_batches_per_step_and_resumes_exactly(data_dir, tmp_path):
    from test_resume import metrics

    from mnistres.train.checkpoint import load
    from mnistres.config import from_dict
    from mnistres.errors import ConfigError

    for bad in ({"low_res": 20, "batch_size": 32, "low_res_batch_size": 48}, {"low_res": 20, "low_res_batch_size": -32}):
        with pytest.raises(ConfigError, match="low_res_batch_size"):
            from_dict(bad)
    from_dict({"low_res": 0, "batch_size": 48, "low_res_batch_size": 64})  # without low_res it has nothing to say
    # 160 images: 5 batches of 32 per epoch; the first 1.5 epochs (8 batches, rounded) at low_res, 2 per step.
    base = config(data_dir, tmp_path, epochs=3, batch_size=32, train_size=160, low_res=20, low_res_epochs=1.5,
                  low_res_mode="crop", low_res_batch_size=64, precise_bn=0)
    shapes = InputShapes()
    merged = train(base.replace(name="merged"), extra_callbacks=[shapes])
    assert shapes.sides == [[(64, 20), (64, 20), (32, 20)],  # the epoch's last step has only its last batch left
                            [(64, 20), (32, 20), (32, 28), (32, 28)],  # the 8th batch alone: the switch comes first
                            [(32, 28)] * 5]
    assert load(merged.run_dir / "last.pt")["global_step"] == 15  # the schedule counts batches of batch_size
    # A low_res_batch_size of batch_size is the plain run; a bigger one trains differently.
    plain = train(base.replace(name="plain", low_res_batch_size=32))
    assert metrics(plain.run_dir) == metrics(train(base.replace(name="default", low_res_batch_size=0)).run_dir)
    assert metrics(plain.run_dir) != metrics(merged.run_dir)
    # Stopped after a merged step of the second epoch, the run goes on where it was.
    assert_interrupted_and_resumed_like(base, merged, tmp_path)
