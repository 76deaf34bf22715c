"""Shell completion as bash runs it: registry names and RunConfig keys, quickly and without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def _env(tmp_path: Path) -> dict[str, str]:
    """The user's environment with this Python's `mnistres` first on PATH and a fresh home and cache."""
    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def _complete(script: Path, words: str, env: dict[str, str]) -> list[str]:
    """What bash offers after `words` (the last word being completed), through the installed script."""
    line = (f"source {script}; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); "
            "_mnistres_completion mnistres; printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run([BASH, "-c", line], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.splitlines() if word]


@pytest.fixture
def installed(tmp_path) -> tuple[Path, dict[str, str]]:
    """`mnistres --install-completion` run from bash, as a user would: the script it wrote."""
    env = _env(tmp_path)
    done = subprocess.run([BASH, "-c", "mnistres --install-completion"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bash completion installed" in done.stdout
    bashrc = (tmp_path / "home" / ".bashrc").read_text()
    script = tmp_path / "home" / ".bash_completions" / "mnistres.sh"
    assert script.is_file() and str(script.name) in bashrc
    return script, env


def test_bash_completes_registry_names_and_config_keys(installed):
    script, env = installed
    assert _complete(script, "mnistres train --activation r", env) == ["relu"]
    assert {"adam", "adamw", "sgd", "rmsprop"} <= set(_complete(script, "mnistres train --optimizer ''", env))
    assert _complete(script, "mnistres sweep --schedule one", env) == ["onecycle"]
    assert _complete(script, "mnistres train --preset b", env) == ["best"]
    assert "per_class_accuracy" in _complete(script, "mnistres train --callback p", env)
    assert _complete(script, "mnistres sweep batch", env) == ["batch_size"]  # the sweep's PARAM
    assert _complete(script, "mnistres train --set label_s", env) == ["label_smoothing="]
    assert "train" in _complete(script, "mnistres tr", env)


def test_completion_imports_no_torch(tmp_path):
    code = ("import os, sys\nfrom mnistres.cli import main\nsys.argv = ['mnistres']\n"
            "os.environ.update(_MNISTRES_COMPLETE='complete_bash', COMP_WORDS='mnistres train --activation r', "
            "COMP_CWORD='3')\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["relu"] and done.stderr.strip() == "False", done.stderr


EXTRAS = any(ep.dist is not None and ep.dist.metadata["Name"] == "mnistres-extras"
             for ep in metadata.entry_points(group="mnistres.plugins"))


@pytest.mark.skipif(not EXTRAS, reason="plugins/mnistres-extras is not installed")
def test_plugin_names_are_offered_once_a_command_has_loaded_them(installed, tmp_path):
    script, env = installed
    assert _complete(script, "mnistres train --optimizer li", env) == []  # plugins not seen yet: built-ins only
    subprocess.run(["mnistres", "plugins"], env=env, capture_output=True, check=True, timeout=120)
    cache = tmp_path / "cache" / "mnistres" / "completion-names.json"
    assert cache.is_file()
    assert _complete(script, "mnistres train --optimizer li", env) == ["lion"]
    # Another set of installed plugins (here: a fingerprint that no longer matches): built-ins only again.
    record = json.loads(cache.read_text())
    cache.write_text(json.dumps({**record, "fingerprint": ["something else"]}))
    assert _complete(script, "mnistres train --optimizer li", env) == []
