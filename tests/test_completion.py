"""Shell completion as bash runs it (and as zsh and fish ask for it): registry names and RunConfig keys,
quickly and without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mnistres.registry import REGISTRIES, activations, optimizers

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


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


@needs_bash
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


def _ask(shell: str, words: str, tmp_path: Path) -> list[str]:
    """What the script `--install-completion` writes for zsh or fish gets from the program (Typer's protocol),
    asked directly, so that neither shell needs to be installed."""
    env = dict(_env(tmp_path), _MNISTRES_COMPLETE=f"complete_{shell}", _TYPER_COMPLETE_ARGS=words,
               _TYPER_COMPLETE_FISH_ACTION="get-args")
    done = subprocess.run([shutil.which("mnistres", path=env["PATH"])], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_zsh_and_fish_get_each_candidate_with_its_help_on_one_line(tmp_path):
    # zsh: one `_arguments` line naming each candidate with its help (a quote doubled, a colon escaped);
    # fish: a "name<TAB>help" line per candidate.
    relu = activations.get("relu").help
    assert _ask("zsh", "mnistres train --activation re", tmp_path) == [
        "_arguments '*: :((\"relu\":\"" + relu.replace("'", "''") + "\"))'"]
    assert _ask("fish", "mnistres train --activation re", tmp_path) == ["relu\t" + relu]
    assert _ask("fish", "mnistres train --set label_s", tmp_path) == ["label_smoothing="]
    # A help longer than a line is cut at a word: a second line would be a second candidate to fish
    # (`0.01` after `sgd`), as it was when Typer wrapped sgd's help at 80 columns.
    sgd = _ask("fish", "mnistres train --optimizer sg", tmp_path)
    assert len(optimizers.get("sgd").help) > 80 and len(sgd) == 1
    name, help = sgd[0].split("\t")
    assert name == "sgd" and help.endswith("...") and optimizers.get("sgd").help.startswith(help[:-3])
    for kind, option in (("schedulers", "--schedule"), ("presets", "--preset"), ("callbacks", "--callback")):
        offered = [line.split("\t")[0] for line in _ask("fish", f"mnistres train {option} ''", tmp_path)]
        assert offered and set(offered) <= set(REGISTRIES[kind].names()), (kind, offered)  # no piece of a help


@needs_bash
def test_completion_imports_no_torch(tmp_path):
    code = ("import os, sys\nfrom mnistres.cli import main\nsys.argv = ['mnistres']\n"
            "os.environ.update(_MNISTRES_COMPLETE='complete_bash', COMP_WORDS='mnistres train --activation r', "
            "COMP_CWORD='3')\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["relu"] and done.stderr.strip() == "False", done.stderr


EXTRAS = any(ep.dist is not None and ep.dist.metadata["Name"] == "mnistres-extras"
             for ep in metadata.entry_points(group="mnistres.plugins"))


@needs_bash
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
