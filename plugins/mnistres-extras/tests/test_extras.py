"""Tests of the mnistres-extras plugin, through mnistres's public registries as a user reaches them.

Run with `python -m pytest plugins/mnistres-extras/tests` once the plugin is installed
(`pip install ./plugins/mnistres-extras`): the entries must arrive through the entry point.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch

from mnistres.config import RunConfig
from mnistres.errors import ConfigError
from mnistres.registry import activations, callbacks, optimizers, schedulers
from mnistres.testing import write_synthetic_dataset
from mnistres.trainer import train

ENTRIES = [(activations, "squareplus"), (optimizers, "lion"), (schedulers, "warmup_linear"), (callbacks, "batch_csv")]


@pytest.mark.parametrize("registry, name", ENTRIES)
def test_entries_arrive_through_the_entry_point_with_their_version(registry, name):
    entry = registry.get(name)
    assert entry.source.startswith("mnistres-extras ")  # "<distribution> <version>", not "built-in"
    assert entry.help


def test_squareplus_is_the_formula_and_tends_to_relu():
    x = torch.linspace(-5, 5, 101)
    assert torch.allclose(activations.build("squareplus")(x), (x + torch.sqrt(x * x + 4)) / 2)
    assert torch.allclose(activations.build("squareplus:b=0")(x), torch.relu(x))
    with pytest.raises(ConfigError, match="option b=.-1.: expected >= 0"):
        activations.build("squareplus:b=-1")  # refused when the spec is parsed, before anything is built


def test_lion_moves_each_weight_by_lr_times_the_sign():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = optimizers.build("lion", [weight], lr=0.1)
    weight.grad = torch.tensor([0.5, -0.1, 0.0])
    optimizer.step()
    # First step: momentum is zero, so the update is sign((1 - beta1) * g).
    assert torch.allclose(weight.detach(), torch.tensor([0.9, -1.9, 3.0]))


def test_lion_minimises_a_quadratic():
    weight = torch.nn.Parameter(torch.tensor([4.0, -3.0]))
    optimizer = optimizers.build("lion:weight_decay=0.0", [weight], lr=0.05)
    for _ in range(300):  # the slow momentum (beta2 0.99) overshoots before it settles
        optimizer.zero_grad()
        (weight ** 2).sum().backward()
        optimizer.step()
    assert weight.abs().max() < 0.01


def test_warmup_linear_rises_then_falls_to_zero():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    schedule = schedulers.build("warmup_linear:warmup_epochs=1", optimizer, lr=1.0, epochs=4, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    peak = rates.index(max(rates))
    assert peak == 10 and math.isclose(rates[peak], 1.0)
    assert all(a < b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a > b for a, b in zip(rates[peak:], rates[peak + 1:]))
    assert rates[-1] < 0.05


def test_a_run_with_all_four_entries_writes_the_csv(tmp_path):
    write_synthetic_dataset(tmp_path / "data", train_images=200, test_images=50)
    config = RunConfig(data_dir=str(tmp_path / "data"), download=False, device="cpu", epochs=2, batch_size=20,
                       width=8, blocks=1, precise_bn=40, activation="squareplus", optimizer="lion", lr=1e-3,
                       schedule="warmup_linear", callbacks=("batch_csv:every=5",), out_dir=str(tmp_path / "runs"),
                       name="extras")
    result = train(config)
    assert result.status == "completed"
    rows = list(csv.DictReader((result.run_dir / "batches.csv").open()))
    assert [int(r["global_step"]) for r in rows] == list(range(5, 21, 5))  # 10 steps per epoch, 2 epochs
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert {key: result.summary["plugins"][key]["source"].split()[0] for key in ("activation", "optimizer", "schedule")} \
        == {"activation": "mnistres-extras", "optimizer": "mnistres-extras", "schedule": "mnistres-extras"}


def _csv_config(tmp_path, name: str) -> RunConfig:
    write_synthetic_dataset(tmp_path / "data", train_images=200, test_images=50)
    return RunConfig(data_dir=str(tmp_path / "data"), download=False, device="cpu", epochs=3, batch_size=20,
                     width=8, blocks=1, precise_bn=40, threads=1, callbacks=("batch_csv:every=5",),
                     out_dir=str(tmp_path / "runs"), name=name)


def test_batch_csv_keeps_its_rows_across_a_resume(tmp_path):
    """It opened batches.csv with "w" on every start: a resumed run lost the rows of its earlier epochs."""
    from mnistres.api import Callback
    from mnistres.trainer import resume_config

    class CtrlCInEpochTwo(Callback):
        def on_batch_end(self, trainer, step):
            if trainer.epoch == 2 and step == 7:
                raise KeyboardInterrupt

    whole = train(_csv_config(tmp_path, "whole"))
    with pytest.raises(KeyboardInterrupt):
        train(_csv_config(tmp_path, "cut"), extra_callbacks=[CtrlCInEpochTwo()])
    cut = tmp_path / "runs" / "cut"
    assert "2,5,15," in (cut / "batches.csv").read_text()  # a row of the epoch cut short, dropped on resume
    resumed = train(resume_config(cut), resume=True)
    assert resumed.status == "completed"
    rows = list(csv.DictReader((cut / "batches.csv").open()))
    expected = list(csv.DictReader((whole.run_dir / "batches.csv").open()))
    assert [(r["epoch"], r["global_step"]) for r in rows] == [(r["epoch"], r["global_step"]) for r in expected]
    assert [int(r["global_step"]) for r in rows] == list(range(5, 31, 5))


def test_overwrite_removes_the_earlier_batch_csv(tmp_path):
    first = train(_csv_config(tmp_path, "again"))
    assert (first.run_dir / "batches.csv").is_file()
    plain = _csv_config(tmp_path, "again").replace(callbacks=())
    second = train(plain, overwrite=True)
    assert second.status == "completed" and not (second.run_dir / "batches.csv").exists()
