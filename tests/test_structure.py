"""The package's shape: no import circles, one owner per concept, names resolved once.

docs/architecture.md is the map these tests keep true.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import mnistres
from mnistres.config import RunConfig

PACKAGE = Path(mnistres.__file__).parent


def module_name(path: Path) -> str:
    """A file's module inside the package, dotted: `trainer`, `cli.app`; a package's __init__ is the package."""
    if PACKAGE not in path.parents:
        return path.stem
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_of(dotted: str) -> str:
    """`cli.app` if that is a module (or package) of mnistres, else its longest prefix that is one."""
    parts = dotted.split(".")
    while parts:
        candidate = PACKAGE.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return dotted


def imports_of(path: Path) -> set[str]:
    """The mnistres modules a file imports anywhere: at the top, inside functions, or only for type checking
    (dotted names inside the package: `trainer`, `cli.app`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnistres"):
            inside = node.module[len("mnistres."):] if node.module != "mnistres" else ""
            for alias in node.names:  # `from mnistres.cli import app`: the module cli.app, if it is one
                joined = f"{inside}.{alias.name}" if inside else alias.name
                module = _module_of(joined)
                if module == joined or inside:
                    found.add(module)
        elif isinstance(node, ast.Import):
            found |= {_module_of(alias.name[len("mnistres."):]) for alias in node.names
                      if alias.name.startswith("mnistres.")}
    return found - {module_name(path), ""}


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_itself_back_through_others():
    graph = import_graph()

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            module, path = stack.pop()
            for imported in sorted(graph.get(module, ())):
                if imported == start:
                    return path + [start]
                if imported not in seen:
                    seen.add(imported)
                    stack.append((imported, path + [imported]))
        return None

    circles = [" -> ".join(found) for found in map(cycle_from, sorted(graph)) if found]
    assert not circles, f"import circles: {circles}"


def test_the_graph_sees_lazy_and_type_only_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mnistres.trainer import Trainer\n"
                      "def f():\n    from mnistres import sweep, atomic\n")
    assert imports_of(sample) == {"trainer", "sweep", "atomic"}


def test_the_callback_api_is_a_leaf_that_everyone_shares():
    from mnistres import api, callbacks, trainer

    assert imports_of(PACKAGE / "api.py") == set()
    assert callbacks.Callback is api.Callback  # plugins written against mnistres.callbacks keep working
    assert trainer.Callback is api.Callback
    methods = {name for name, _ in inspect.getmembers(api.Callback, inspect.isfunction)}
    assert methods == {"on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end", "outputs"}


def test_the_trainer_offers_every_attribute_the_api_promises(data_dir, tmp_path):
    from rich.console import Console

    from mnistres.api import Callback, TrainerState
    from mnistres.trainer import train

    promised = [name for name in TrainerState.__annotations__] + ["running_metrics", "open_run_file"]
    missing: set[str] = set()

    class Inspect(Callback):
        def on_batch_end(self, trainer, step):
            missing.update(name for name in promised if not hasattr(trainer, name))

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=1, width=8, blocks=1,
                       precise_bn=0, threads=1, callbacks=(), out_dir=str(tmp_path), name="api")
    train(config, console=Console(file=open(tmp_path / "out.txt", "w")), extra_callbacks=[Inspect()])
    assert len(promised) > 10 and not missing


def test_names_are_looked_up_once_per_run(data_dir, tmp_path, monkeypatch):
    """A resolved config goes through the trainer without any registry name parsed again."""
    from rich.console import Console

    from mnistres import registry
    from mnistres.resolve import resolve
    from mnistres.trainer import train

    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=1, width=8, blocks=1,
                       precise_bn=0, threads=1, optimizer="sgd:momentum=0.9", out_dir=str(tmp_path), name="once")
    resolved = resolve(config)
    parsed: list[str] = []
    original = registry.Registry.parse

    def counting(self, spec):
        parsed.append(f"{self.kind} {spec}")
        return original(self, spec)

    monkeypatch.setattr(registry.Registry, "parse", counting)
    result = train(resolved, console=Console(file=open(tmp_path / "out.txt", "w")))
    assert result.status == "completed" and parsed == []
    train(config.replace(name="again"), console=Console(file=open(tmp_path / "out2.txt", "w")))
    assert len(parsed) == 3 + len(config.callbacks)  # a plain RunConfig: each name once


def test_a_sweep_resolves_each_point_while_planning(monkeypatch):
    from mnistres.sweep import plan as sweep
    from mnistres.resolve import Resolved

    plan = sweep.make_plan(RunConfig(), {"optimizer": ["adam", "sgd:momentum=0.9"]})
    assert all(isinstance(point.resolved, Resolved) for point in plan.points)
    assert [str(point.resolved.optimizer) for point in plan.points] == ["adam", "sgd:momentum=0.9"]
    # momentum and weight_decay reach the optimizer as options, in the one resolution step
    assert plan.points[1].resolved.with_execution(device="cpu").config.device == "cpu"
    with pytest.raises(ValueError):
        plan.points[1].resolved.with_execution(lr=0.1)


def test_the_model_is_built_from_a_spec_or_a_config_only():
    from mnistres.train import model
    from mnistres.registry import activations
    from mnistres.resolve import resolve

    config = RunConfig(activation="leaky_relu:negative_slope=0.2", width=8, blocks=1)
    with pytest.raises(TypeError):
        model.build("relu", 8, 1)
    for network in (model.from_config(config), model.from_config(resolve(config)),
                    model.build(activations.parse(config.activation), 8, 1)):
        assert network.stem[2].negative_slope == 0.2 and len(network.blocks) == 1


def test_train_and_sweep_take_the_same_run_options():
    from typer.main import get_command

    from mnistres.cli import LAYER_OPTIONS, RUN_OPTIONS, app

    group = get_command(app)
    for name in ("train", "sweep"):
        declared = {param.name for param in group.commands[name].params}
        assert set(RUN_OPTIONS) | set(LAYER_OPTIONS) <= declared, (name, set(RUN_OPTIONS) - declared)
    assert set(RUN_OPTIONS) <= set(RunConfig.__dataclass_fields__)


def test_one_rule_makes_names_and_one_rule_checks_them():
    from mnistres.runs import names as rundir  # the names' rules moved out of rundir

    for text in ("lr=0.1,activation=leaky_relu:negative_slope=0.1,seed=0", "a b/c", "..hidden", "ünïcode"):
        made = rundir.safe_name(text)
        assert made and rundir.name_problem(made) == "", (text, made)
    assert rundir.name_problem("a/b") and rundir.name_problem(".x") and rundir.name_problem("x" * 201)
    assert rundir.name_problem(rundir.default_name("mnist", "leaky_relu:negative_slope=0.1", "sgd", 0.1, 32)) == ""


def test_each_setting_is_described_once_on_its_field():
    """The settings reference page (tests/test_reference.py keeps it fresh) and the run options' help are
    made from RunConfig's fields."""
    from mnistres import config
    from mnistres.cli import RUN_OPTIONS, reference

    page = reference.settings_page()
    for key in config.KEYS:
        assert config.help_of(key).replace("|", "\\|") in page, key
        assert config.help_of(key) and config.metavar_of(key) and config.default_text(key), key
    for key, option in RUN_OPTIONS.items():
        declared = option.__metadata__[0]
        assert declared.help.startswith(config.help_of(key).replace("[", "\\[")), key


# Each folder (or top-level module) and the floors it may import from; docs/architecture.md draws the same.
FLOORS = {
    "errors": set(), "api": set(),
    "core": {"errors"},
    "registry": {"core", "errors"},
    "runs": {"core", "errors"},
    "config": {"core", "errors", "registry", "runs"},
    "resolve": {"config", "core", "errors", "registry", "runs"},
    "train": {"api", "config", "core", "errors", "registry", "resolve", "runs"},
    "reporting": {"config", "core", "errors", "runs", "train"},
    "inference": {"config", "core", "errors", "registry", "reporting", "runs", "train"},
    "sweep": {"api", "config", "core", "errors", "registry", "resolve", "runs", "train"},
    "tune": {"api", "config", "core", "errors", "inference", "registry", "resolve", "runs", "sweep", "train"},
    "builtins": {"api", "core", "errors", "registry", "runs", "sweep", "train", "tune"},
    "serve": {"config", "core", "errors", "inference", "registry", "reporting", "runs", "train"},
    "testing": {"train"},
}


def test_each_folder_imports_only_the_floors_below_it():
    graph = import_graph()
    wrong = []
    for module, imported in sorted(graph.items()):
        floor = module.split(".")[0]
        if floor not in FLOORS:
            continue  # the command line, and the public doors (trainer, callbacks, worker, results), may import anything
        wrong += [f"{module} -> {other}" for other in sorted(imported)
                  if other.split(".")[0] not in FLOORS[floor] | {floor, "__version__"}]
    assert not wrong, f"imports against the map: {wrong}"
    listed = {path.name.removesuffix(".py") for path in PACKAGE.iterdir()
              if not path.name.startswith("_") and (path.suffix == ".py" or (path / "__init__.py").is_file())}
    assert listed - {"cli", "trainer", "callbacks", "worker", "results"} == set(FLOORS)  # every room has its floor
