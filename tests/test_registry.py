"""Registries: every entry builds and works, names fail helpfully, plugins use one door."""

from __future__ import annotations

import pytest
import torch

from mnistres.train import model as model_module
from mnistres.config import RunConfig
from mnistres.errors import ConfigError, UnknownNameError
from mnistres.registry import BUILT_IN, Registry, activations, callbacks, optimizers, schedulers


def tiny_model(activation="relu"):
    torch.manual_seed(0)
    return model_module.from_config(RunConfig(activation=activation, width=8, blocks=1))


def one_step(model, optimizer, scheduler=None):
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    assert torch.isfinite(loss)
    return any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", activations.names())
def test_every_activation_builds_and_trains(name):
    model = tiny_model(name)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert one_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    # each layer gets its own module instance
    acts = [m for m in model.modules() if type(m).__name__ == type(model.stem[2]).__name__]
    assert len({id(m) for m in acts}) == len(acts) >= 3


@pytest.mark.parametrize("name", optimizers.names())
def test_every_optimizer_builds_and_steps(name):
    model = tiny_model()
    lr = 1.0 if name == "adadelta" else 0.01
    optimizer = optimizers.build(name, model.parameters(), lr=lr)
    assert one_step(model, optimizer)


@pytest.mark.parametrize("name", schedulers.names())
def test_every_schedule_builds_and_steps(name):
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = schedulers.build(name, optimizer, lr=0.01, epochs=4, steps_per_epoch=3)
    rates = []
    for _ in range(12):  # every step of the four epochs; record the rate each one uses
        rates.append(optimizer.param_groups[0]["lr"])
        assert one_step(model, optimizer, scheduler)
    assert all(r > 0 for r in rates)
    if name == "constant":
        assert set(rates) == {0.01}
    else:
        assert len(set(rates)) > 1


@pytest.mark.parametrize("spec, momentum, expected", [
    ("onecycle", 0.9, (0.95, 0.85, 0.95)),  # torch's cycle, whatever the optimizer's own momentum
    ("onecycle:base_momentum=0.8,max_momentum=0.9", 0.9, (0.9, 0.8, 0.9)),
    ("onecycle:cycle_momentum=false", 0.9, (0.9, 0.9, 0.9)),
    ("onecycle", 0.0, (0.0, 0.0, 0.0)),  # SGD without momentum is not given any
])
def test_onecycle_cycles_momentum_as_its_options_say(spec, momentum, expected):
    model = tiny_model()
    optimizer = optimizers.build(f"sgd:momentum={momentum}", model.parameters(), lr=0.1)
    scheduler = schedulers.build(spec, optimizer, lr=0.1, epochs=10, steps_per_epoch=1)  # peak after 3 steps
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["momentum"])
        assert one_step(model, optimizer, scheduler)
    assert (seen[0], min(seen), seen[-1]) == pytest.approx(expected)  # start, at the lr's peak, last step


@pytest.mark.parametrize("name", callbacks.names())
def test_every_callback_runs_in_a_training_run(name, data_dir, tmp_path):
    from rich.console import Console

    from mnistres.config import RunConfig
    from mnistres.trainer import train

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=2, width=8, blocks=1,
                       lr=0.01, precise_bn=64, threads=1, callbacks=(name,), out_dir=str(tmp_path), name=name)
    if name == "tune_trial":  # it reports to a search's trial: run as one, by `mnistres tune` (tests/test_tune.py)
        pytest.importorskip("optuna")
        from mnistres.tune import search

        space = tmp_path / "space.yaml"
        space.write_text("lr: [0.01, 0.02]\n")
        found = search.plan_from(space, {**config.to_dict(), "callbacks": None, "val_split": None}, [], [], None, trials=1,
                                 sampler="random", pruner="median", storage=None)
        outcome = search.run(found, jobs=1, console=Console(file=open(tmp_path / "out.txt", "w")))
        assert [t.state.name for t in outcome.trials] == ["COMPLETE"]
        assert sorted(outcome.trials[0].intermediate_values) == [1, 2]  # the callback's reports, each epoch
        return
    result = train(config, console=Console(file=open(tmp_path / "out.txt", "w")))
    assert result.status == "completed" and len(result.history) >= 1


def test_optimizer_options_reach_torch():
    model = tiny_model()
    optimizer = optimizers.build("sgd:momentum=0.9,nesterov=true", model.parameters(), lr=0.1)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is True
    adam = optimizers.build("adam:eps=1e-7,beta1=0.8", model.parameters(), lr=0.1)
    assert adam.defaults["eps"] == 1e-7 and adam.defaults["betas"] == (0.8, 0.999)


@pytest.mark.parametrize("name, torch_class", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                               ("adamw", torch.optim.AdamW), ("adagrad", torch.optim.Adagrad)])
def test_fused_update_where_torch_has_one(name, torch_class):
    model = tiny_model()
    try:
        torch_class(list(model.parameters()), lr=0.1, fused=True)
        has_fused = True
    except (RuntimeError, TypeError, ValueError):
        has_fused = False
    assert bool(optimizers.build(name, model.parameters(), lr=0.1).defaults.get("fused")) is has_fused
    assert not optimizers.build(f"{name}:fused=false", model.parameters(), lr=0.1).defaults.get("fused")
    # Same algorithm: one step of each implementation moves the weights (almost) alike.
    moved = []
    for spec in (name, f"{name}:fused=false"):
        model = tiny_model()
        one_step(model, optimizers.build(spec, model.parameters(), lr=0.01))
        moved.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(moved[0], moved[1], atol=1e-6)


def test_unknown_name_lists_names_and_closest():
    with pytest.raises(UnknownNameError) as caught:
        activations.get("tanhh")
    message = str(caught.value)
    assert "did you mean 'tanh'" in message
    for name in activations.names():
        assert name in message


def test_names_are_case_and_dash_insensitive():
    assert activations.get("Leaky-ReLU").name == "leaky_relu"


def test_bad_option_values():
    with pytest.raises(ConfigError, match="expected a number"):
        optimizers.parse("sgd:momentum=lots")
    with pytest.raises(ConfigError, match="key=value"):
        optimizers.parse("sgd:momentum")


def test_builtins_come_through_the_entry_point():
    from importlib import metadata

    groups = metadata.entry_points(group="mnistres.plugins")
    assert "mnistres.builtins" in {ep.value for ep in groups}
    for registry in (activations, optimizers, schedulers, callbacks):
        ours = [e for e in registry.entries() if getattr(e.factory, "__module__", "").startswith("mnistres.")]
        assert ours and all(entry.source == BUILT_IN for entry in ours)


def test_duplicate_registration_names_both_sources():
    registry = Registry("widget")

    @registry.register("thing", help="first")
    def first():
        return 1

    with pytest.raises(ConfigError, match="registered twice"):
        @registry.register("thing", help="second")
        def second():
            return 2


def test_every_entry_describes_itself():
    for registry in (activations, optimizers, schedulers, callbacks):
        for entry in registry.entries():
            assert entry.help and entry.name == entry.name.lower()


@pytest.mark.parametrize("name", __import__("mnistres.registry", fromlist=["datasets"]).datasets.names())
def test_every_dataset_describes_its_files_and_trains(name, tmp_path):
    from rich.console import Console

    from mnistres.api import DatasetFiles
    from mnistres.config import dataset_name
    from mnistres.registry import datasets
    from mnistres.testing import write_synthetic_dataset
    from mnistres.trainer import train

    files = datasets.build(name)
    assert isinstance(files, DatasetFiles) and files.folder and 0 < files.mean < 1 and 0 < files.std < 1
    root = write_synthetic_dataset(tmp_path / "data", folder=files.folder)
    config = RunConfig(dataset=dataset_name(name), data_dir=str(root), download=False, device="cpu", epochs=1,
                       width=8, blocks=1, precise_bn=0, threads=1, callbacks=(), out_dir=str(tmp_path), name=name)
    result = train(config, console=Console(file=open(tmp_path / "out.txt", "w")))
    assert result.status == "completed" and result.summary["train_images"] > 0


def test_every_executor_builds_with_the_sweeps_context():
    from mnistres.api import Executor
    from mnistres.registry import executors

    for name in executors.names():
        built = executors.build(name, jobs=1, devices=[], threads=1)
        assert isinstance(built, Executor) and built.capacity >= 1, name
