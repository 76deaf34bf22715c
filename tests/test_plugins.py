"""Plugins as users meet them: --plugin files and modules, MNISTRES_PLUGINS, the autoload switch,
broken plugins, entries that fail to build or run, --callback, provenance and `plugins --json`.

Tests that need a fresh process (which plugins load at start-up) run `python -m mnistres`;
the others load file plugins in-process and put the registries back afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnistres import registry
from mnistres.cli import app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_plugin.py"


@pytest.fixture(autouse=True)
def restore_registries():
    """File plugins register into the process's registries; leave them as they were."""
    registry.load_plugins()  # snapshot the loaded state, not an empty one
    entries = {kind: dict(reg._entries) for kind, reg in registry.REGISTRIES.items()}
    requested, failed = list(registry._requested), list(registry.failed_plugins)
    yield
    for kind, reg in registry.REGISTRIES.items():
        reg._entries = entries[kind]
    registry._requested[:] = requested
    registry.failed_plugins[:] = failed


def invoke(*args: str):
    return runner.invoke(app, list(args))


def mnistres(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MNISTRES_DEBUG": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mnistres", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def write_plugin(path: Path, body: str) -> Path:
    path.write_text("from mnistres.registry import activations, callbacks, optimizers, schedulers\n"
                    "from mnistres.callbacks import Callback\n" + body)
    return path


# --- --plugin with a file ------------------------------------------------------------------------


def test_one_file_plugin_trains_and_is_listed_with_its_file(fast):
    listing = invoke("plugins", "--plugin", str(EXAMPLE), "--json")
    assert listing.exit_code == 0, listing.output
    described = json.loads(listing.output)
    found = {e["name"]: e for e in described["registries"]["activations"]}
    assert found["swish_beta"]["source"] == f"file {EXAMPLE}" and found["swish_beta"]["options"] == {"beta": 1.0}
    assert any(e["name"] == "stop_at" for e in described["registries"]["callbacks"])

    result = invoke("train", *fast, "--epochs", "5", "--plugin", str(EXAMPLE), "--activation", "swish_beta:beta=1.5",
                    "--callback", "stop_at:target=0.0", "--name", "p")
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("runs/p/summary.json").read_text())
    assert summary["epochs_completed"] == 1 and "reached the target" in summary["message"]
    assert summary["plugins"]["activation"] == {"name": "swish_beta:beta=1.5", "source": f"file {EXAMPLE}"}
    assert [c["name"] for c in summary["plugins"]["callbacks"]] == ["per_class_accuracy", "progress",
                                                                    "stop_at:target=0.0"]


@pytest.mark.parametrize("plugin, fragment", [
    ("missing_plugin.py", "plugin 'missing_plugin.py' failed to load: file not found"),
    ("no_such_module_here", "plugin 'no_such_module_here'"),
])
def test_a_named_plugin_that_does_not_load_is_one_line_and_exit_2(fast, plugin, fragment):
    result = invoke("train", *fast, "--plugin", plugin)
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert not Path("runs").exists()


def test_a_failing_plugin_leaves_nothing_half_registered(tmp_path, fast):
    broken = write_plugin(tmp_path / "half.py", """
@activations.register("half_registered", help="registered before the error")
def half():
    import torch.nn as nn
    return nn.ReLU()

raise RuntimeError("the rest of this plugin is broken")
""")
    result = invoke("train", *fast, "--plugin", str(broken), "--activation", "half_registered")
    assert result.exit_code == 2
    assert "RuntimeError: the rest of this plugin is broken" in result.output
    assert "half_registered" not in registry.activations


def test_a_name_taken_by_another_plugin_is_refused_naming_both(tmp_path, fast):
    plugin = write_plugin(tmp_path / "again.py", """
@activations.register("relu", help="a second relu")
def relu():
    import torch.nn as nn
    return nn.ReLU()
""")
    result = invoke("summary", "--plugin", str(plugin))
    assert result.exit_code == 2
    assert f"activation 'relu' is registered twice: by built-in and by file {plugin}" in result.output
    assert registry.activations.get("relu").source == "built-in"


def test_an_entry_that_fails_to_build_names_itself_and_its_plugin(tmp_path, fast):
    plugin = write_plugin(tmp_path / "bad_build.py", """
@activations.register("explodes", help="raises when built")
def explodes():
    raise ValueError("cannot make this layer")
""")
    result = invoke("train", *fast, "--plugin", str(plugin), "--activation", "explodes")
    assert result.exit_code == 2, result.output
    assert f"activation 'explodes' (from file {plugin}) failed to build: ValueError: cannot make this layer" \
        in result.output
    assert "Traceback" not in result.output


def test_a_callback_that_raises_names_itself_and_the_run_is_marked_failed(tmp_path, fast):
    plugin = write_plugin(tmp_path / "bad_hook.py", """
@callbacks.register("crashes", help="raises after the first epoch")
class Crashes(Callback):
    def on_epoch_end(self, trainer, epoch, logs):
        raise KeyError("missing_metric")
""")
    result = invoke("train", *fast, "--plugin", str(plugin), "--callback", "crashes", "--name", "c")
    assert result.exit_code == 2, result.output
    assert f"callback 'crashes' (from file {plugin}) raised in on_epoch_end: KeyError: 'missing_metric'" \
        in result.output
    assert json.loads(Path("runs/c/summary.json").read_text())["status"] == "failed"


def test_callback_options_are_checked_and_added_to_the_list(fast):
    bad = invoke("train", *fast, "--callback", "early_stopping:patiense=1")
    assert bad.exit_code == 2 and "has no option 'patiense' (it accepts: monitor, patience, min_delta, mode)" \
        in bad.output
    good = invoke("train", *fast, "--callback", "early_stopping:patience=1,min_delta=0.5", "--name", "e")
    assert good.exit_code == 0, good.output
    stored = yaml.safe_load(Path("runs/e/config.yaml").read_text())["callbacks"]
    assert stored == ["per_class_accuracy", "progress", "early_stopping:patience=1,min_delta=0.5"]
    assert "early stopping" in json.loads(Path("runs/e/summary.json").read_text())["message"]


def test_eval_without_the_plugin_names_the_entry_and_the_plugin(fast):
    trained = invoke("train", *fast, "--plugin", str(EXAMPLE), "--activation", "swish_beta", "--name", "s")
    assert trained.exit_code == 0, trained.output
    del registry.activations._entries["swish_beta"]  # as if the plugin were gone
    result = invoke("eval", "runs/s/best.pt", "--data-dir", fast[1], "--device", "cpu")
    assert result.exit_code == 2
    assert (f"runs/s/best.pt needs activation 'swish_beta' from file {EXAMPLE}, which is not installed here"
            in result.output)


# --- discovery at start-up (fresh processes) ------------------------------------------------------


def fake_distribution(site: Path, name: str, module_body: str) -> None:
    """An installed distribution with a `mnistres.plugins` entry point, as pip would leave it."""
    info = site / f"{name}-0.3.dist-info"
    info.mkdir(parents=True)
    (site / f"{name}.py").write_text(module_body)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[mnistres.plugins]\n{name} = {name}\n")


def test_a_broken_installed_plugin_is_reported_and_skipped(tmp_path, fast):
    site = tmp_path / "site"
    fake_distribution(site, "broken_plugin", "raise ImportError('needs a library that is not installed')\n")
    env = {"PYTHONPATH": str(site)}
    listing = mnistres("plugins", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "plugin 'broken_plugin' (broken_plugin 0.3) failed to load and was skipped: ImportError: needs a library" \
        in listing.stderr
    assert "relu" in listing.stdout and "Plugin 'broken_plugin' (broken_plugin 0.3) failed to load" in listing.stdout
    described = json.loads(mnistres("plugins", "--json", cwd=tmp_path, env=env).stdout)
    assert described["failed_plugins"][0]["name"] == "broken_plugin"
    trained = mnistres("train", *fast, "--name", "ok", cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr
    assert "completed" in trained.stdout


def test_autoload_off_skips_entry_points_but_not_the_builtins(tmp_path, fast):
    site = tmp_path / "site"
    fake_distribution(site, "extra_acts", "from mnistres.registry import activations\n"
                                          "@activations.register('cube', help='x ** 3')\n"
                                          "def cube():\n    import torch.nn as nn\n    return nn.Identity()\n")
    env = {"PYTHONPATH": str(site)}
    described = json.loads(mnistres("plugins", "--json", cwd=tmp_path, env=env).stdout)
    assert {"name": "cube", "help": "x ** 3", "options": {}, "source": "extra_acts 0.3", "accepts": {}} \
        in described["registries"]["activations"]
    off = {**env, "MNISTRES_DISABLE_PLUGIN_AUTOLOAD": "1"}
    refused = mnistres("train", *fast, "--activation", "cube", cwd=tmp_path, env=off)
    assert refused.returncode == 2 and "unknown activation 'cube'" in refused.stderr
    assert "installed plugins were not loaded: MNISTRES_DISABLE_PLUGIN_AUTOLOAD is set" in refused.stderr
    assert "Traceback" not in refused.stderr
    trained = mnistres("train", *fast, "--activation", "relu", "--name", "builtin", cwd=tmp_path, env=off)
    assert trained.returncode == 0, trained.stderr


def test_plugins_from_the_environment_and_nothing_from_the_current_folder(tmp_path, fast):
    # A file in the current folder named like a module must never be imported unless named.
    (tmp_path / "yaml.py").write_text("raise SystemExit('the current folder was imported')\n")
    env = {"MNISTRES_PLUGINS": f"{EXAMPLE}{os.pathsep}{tmp_path / 'absent.py'}"}
    result = mnistres("plugins", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    described = json.loads(result.stdout)
    assert any(e["name"] == "swish_beta" for e in described["registries"]["activations"])
    assert described["failed_plugins"] == [{"name": str(tmp_path / "absent.py"), "source": "",
                                            "error": "file not found"}]


SHADOW = ("import pathlib\n"
          "pathlib.Path(__file__).with_name('IMPORTED').write_text('a module from the current folder ran')\n")


def test_python_dash_m_imports_nothing_from_the_current_folder(tmp_path):
    # csv is imported while the package starts (importlib.metadata needs it): before the current
    # folder is dropped from sys.path, a csv.py lying there would be run in its place.
    (tmp_path / "csv.py").write_text(SHADOW)
    result = subprocess.run([sys.executable, "-m", "mnistres", "--version"], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONSAFEPATH": ""})
    assert result.returncode == 0 and result.stdout.startswith("mnistres "), result.stderr
    assert not (tmp_path / "IMPORTED").exists()


def test_sweep_children_import_nothing_from_the_current_folder(fast):
    for name in ("csv.py", "email.py", "typing_extensions.py"):
        Path(name).write_text(SHADOW)
    result = invoke("sweep", "activation", "relu", "tanh", "--jobs", "2", *fast, "--no-report")
    assert result.exit_code == 0, result.output
    assert not Path("IMPORTED").exists()
    for name in ("activation=relu,seed=0", "activation=tanh,seed=0"):
        assert json.loads(Path(f"runs/activation-sweep/{name}/summary.json").read_text())["status"] == "completed"


def test_a_plugin_that_calls_sys_exit_is_reported_and_skipped(tmp_path, fast):
    plugin = write_plugin(tmp_path / "quits.py", "import sys\nsys.exit(3)\n")
    result = mnistres("train", *fast, "--name", "still-runs", cwd=tmp_path, env={"MNISTRES_PLUGINS": str(plugin)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "quits.py" in result.stderr and "called sys.exit(3)" in result.stderr
    listed = json.loads(mnistres("plugins", "--json", cwd=tmp_path, env={"MNISTRES_PLUGINS": str(plugin)}).stdout)
    assert listed["failed_plugins"][0]["error"] == "it called sys.exit(3)"
    named = invoke("plugins", "--plugin", str(plugin))  # named with --plugin: must load, so exit 2
    assert named.exit_code == 2 and "called sys.exit(3)" in named.output


def test_sweep_children_get_the_plugins(fast):
    result = invoke("sweep", "activation", "relu", "swish_beta", "--jobs", "2", "--plugin", str(EXAMPLE), *fast,
                    "--no-report")
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("runs/activation-sweep/activation=swish_beta,seed=0/summary.json").read_text())
    assert summary["status"] == "completed" and summary["plugins"]["activation"]["source"] == f"file {EXAMPLE}"


def test_a_plugin_preset_with_a_bad_key_is_named(tmp_path):
    from mnistres import config as config_module
    from mnistres.errors import ConfigError

    plugin = write_plugin(tmp_path / "bad_preset.py", (
        "from mnistres.registry import presets\n"
        "@presets.register('oops', help='has a typo', options={'learning_rate': 0.1})\n"
        "def oops(**values):\n"
        "    return values\n"))
    registry.request([str(plugin)])
    with pytest.raises(ConfigError, match="unknown key 'learning_rate' in preset 'oops'"):
        config_module.layered({}, "test", preset="oops")


SERIAL_EXECUTOR = '''
import subprocess
import sys

from mnistres.api import Executor
from mnistres.registry import executors


class Serial(Executor):
    """One point at a time, each `python -m mnistres.worker` started by this plugin itself."""

    def __init__(self, label):
        self.label, self.capacity, self.process = label, 1, None

    def start(self, task):
        command = [sys.executable, "-m", "mnistres.worker", str(task.point_file()), "--attempt", task.attempt,
                   *[arg for plugin in task.plugins for arg in ("--plugin", plugin)],
                   *(["--threads", str(task.threads)] if task.threads else [])]
        with open(task.log, "a" if task.resuming else "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        task.started(f"the {self.label} slot")
        return self.process

    def done(self, handle):
        return handle.poll() is not None

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(2)
            self.process.wait()


@executors.register("serial", help="one child process at a time", options={"label": "serial"})
def serial(*, jobs, devices, threads, label):
    return Serial(label)
'''


def test_an_installed_executor_plugin_runs_a_sweep_with_the_numbers_of_the_built_in_one(tmp_path, fast):
    site = tmp_path / "site"
    fake_distribution(site, "serial_exec", SERIAL_EXECUTOR)
    env = {"PYTHONPATH": str(site)}
    described = json.loads(mnistres("plugins", "--json", cwd=tmp_path, env=env).stdout)
    assert {"name": "serial", "help": "one child process at a time", "options": {"label": "serial"},
            "source": "serial_exec 0.3", "accepts": {}} in described["registries"]["executors"]
    assert {"here", "local", "dask"} <= {e["name"] for e in described["registries"]["executors"]}
    common = ["sweep", "lr", "0.01", "0.003", *fast, "--no-report"]
    swept = mnistres(*common, "--executor", "serial:label=plugin's", "--name", "plugin", cwd=tmp_path, env=env)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "2 points: 2 completed" in swept.stdout and "started on the plugin's slot" in swept.stdout
    built_in = mnistres(*common, "--executor", "here", "--name", "here", cwd=tmp_path, env=env)
    assert built_in.returncode == 0, built_in.stdout + built_in.stderr

    def numbers(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s", "eval_seconds")} for row in rows]

    for point in ("lr=0.01,seed=0", "lr=0.003,seed=0"):
        assert numbers(tmp_path / "runs" / "plugin" / point) == numbers(tmp_path / "runs" / "here" / point)
    unknown = mnistres(*common, "--executor", "serail", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "unknown executor 'serail'; did you mean 'serial'?" in unknown.stderr
