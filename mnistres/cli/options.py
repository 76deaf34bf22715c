"""The options commands share: run options declared once (`RUN_OPTIONS`, given to train and sweep by
`with_run_options`), layer options, and shell completion of registry names and RunConfig keys (torch is
never imported to answer it)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from mnistres import config as config_module
from mnistres.core.values import text


def default_of(key: str) -> str:
    """" \\[default: 10]": a RunConfig default, written into the help text (options whose Python default
    is None, so that an option not given can be told from one given, show no default of their own)."""
    value = getattr(config_module.RunConfig, key)
    return f" \\[default: {text(value)}]"


# --- shell completion: names from the registries and RunConfig's keys, never importing torch ---------


# Characters of an entry's help that zsh and fish show beside it. Typer renders that help with Rich at
# the width of the terminal (80 columns when the shell captures it) and a longer one comes out in two
# lines, which fish takes for two candidates (`0.01` after `sgd`) and zsh shows broken.
COMPLETION_HELP = 60


def _completion_help(help: str) -> str:
    """`help` on one line, cut at a word to COMPLETION_HELP characters ("..." where cut), Rich markup escaped."""
    line = " ".join(help.split())
    if len(line) > COMPLETION_HELP:
        line = line[:COMPLETION_HELP - 3].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."
    return line.replace("[", "\\[")


def registry_names(kind: str) -> Any:
    """Completes a registry name (`relu` after `--activation r`), with its help line where the shell shows one."""
    def complete(incomplete: str) -> list[tuple[str, str]]:
        from mnistres.registry import completion_names, normalise

        typed = normalise(incomplete)
        return [(name, _completion_help(help)) for name, help in completion_names(kind) if name.startswith(typed)]

    return complete


def config_keys(suffix: str = "") -> Any:
    """Completes a RunConfig key (the sweep's PARAM; `--set KEY=`)."""
    def complete(incomplete: str) -> list[str]:
        from mnistres.config import KEYS

        return [key + suffix for key in KEYS if key.startswith(incomplete.strip().lower())]

    return complete


def run_option(key: str) -> Any:
    """The option that sets RunConfig `key`, made from its field (`config.setting`): its help, what it
    takes, its default, and the registry names it completes. Values arrive as text (None: not given) and
    are typed by RunConfig, so that a bad one is named in our one-line message; paths too (Path('') would
    silently become '.')."""
    if config_module.metavar_of(key) == "BOOL":
        flag = key.replace("_", "-")
        shown = f"--{flag}" if getattr(config_module.RunConfig, key) else f"--no-{flag}"
        return Annotated[Optional[bool], typer.Option(
            f"--{flag}/--no-{flag}", help=_escaped(config_module.help_of(key)) + f" \\[default: {shown}]")]
    kind = config_module.registry_of(key)
    return Annotated[Optional[str], typer.Option(
        f"--{key.replace('_', '-')}", metavar=config_module.metavar_of(key),
        help=_escaped(config_module.help_of(key)) + f" \\[default: {_escaped(config_module.default_text(key))}]",
        autocompletion=registry_names(kind) if kind else None)]


def _escaped(help: str) -> str:
    return help.replace("[", "\\[")  # help is Rich markup: a literal [ is written \[


# RunConfig key -> its option, in the order help lists them; given to `train` and `sweep` by `with_run_options`.
# Adding a run option is adding its key here (its help, type and default are its field's).
RUN_OPTIONS: dict[str, Any] = {key: run_option(key) for key in (
    "epochs", "batch_size", "lr", "activation", "optimizer", "schedule", "device", "seed", "data_dir", "dataset",
    "out_dir", "name", "train_size", "val_split", "threads", "download")}

# Options other commands share.
DeviceOpt, DataDirOpt, ActivationOpt = RUN_OPTIONS["device"], RUN_OPTIONS["data_dir"], RUN_OPTIONS["activation"]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", metavar="FILE", help="YAML file of RunConfig keys.")]
SetOpt = Annotated[Optional[List[str]], typer.Option(
    "--set", "-s", metavar="KEY=VALUE", help="Any RunConfig key; repeatable; wins over everything else.",
    autocompletion=config_keys("="))]
TagOpt = Annotated[Optional[List[str]], typer.Option(
    "--tag", metavar="TAG", help="A tag to keep on it (`mnistres runs DIR --tag TAG` finds it); repeatable.")]
NoteOpt = Annotated[Optional[str], typer.Option("--note", metavar="TEXT", help="A note to keep on it.")]
PluginOpt = Annotated[Optional[List[str]], typer.Option(
    "--plugin", metavar="MODULE|FILE.py", help="Load a plugin; repeatable (also $MNISTRES_PLUGINS).")]
PresetOpt = Annotated[Optional[str], typer.Option(
    "--preset", metavar="NAME[:KEY=VALUE,...]",
    help="A named bundle of settings: fast or best (see `mnistres plugins`); config file, options and --set win over it.",
    autocompletion=registry_names("presets"))]
CallbackOpt = Annotated[Optional[List[str]], typer.Option(
    "--callback", metavar="NAME[:KEY=VALUE,...]",
    help="Add a callback to the run's list; repeatable (see `mnistres plugins`).", autocompletion=registry_names("callbacks"))]


# The options that add layers of their own (config.layered): a preset, callbacks, --set pairs.
LAYER_OPTIONS: dict[str, Any] = {"callback": CallbackOpt, "preset": PresetOpt, "sets": SetOpt}


@dataclass(frozen=True)
class RunRequest:
    """What a command line says about its runs' settings, as the layers `config.layered` takes."""

    options: dict[str, Any]  # RunConfig key -> its option's value (None: not given)
    callbacks: list[str]  # --callback specs, added to the run's list
    preset: Optional[str]  # --preset
    sets: list[str]  # --set key=value pairs


def with_run_options(after: str, **own: Any) -> Any:
    """Give a command the run options (RUN_OPTIONS, listed after its parameter `after`) and the layer
    options (LAYER_OPTIONS, listed before --plugin); `own` replaces an option's declaration where the
    command means something else by it (sweep's --name names the sweep). The command receives them
    together as `run`, a RunRequest.

    Adding a run option is one line in RUN_OPTIONS (and its RunConfig field).
    """
    def decorate(command: Any) -> Any:
        signature = inspect.signature(command, eval_str=True)
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                  for p in signature.parameters.values() if p.name != "run"]
        names = [p.name for p in params]

        def declared(table: dict[str, Any]) -> list[inspect.Parameter]:
            return [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=own.get(key, option))
                    for key, option in table.items()]

        at, before = names.index(after) + 1, names.index("plugin")
        params = params[:at] + declared(RUN_OPTIONS) + params[at:before] + declared(LAYER_OPTIONS) + params[before:]

        @functools.wraps(command)
        def with_options(**arguments: Any) -> Any:
            run = RunRequest({key: arguments.pop(key) for key in RUN_OPTIONS}, arguments.pop("callback") or [],
                             arguments.pop("preset"), arguments.pop("sets") or [])
            return command(**arguments, run=run)

        del with_options.__wrapped__  # Typer reads the signature below, not the command's own
        with_options.__signature__ = signature.replace(parameters=params)
        with_options.__annotations__ = {p.name: p.annotation for p in params}
        return with_options

    return decorate
