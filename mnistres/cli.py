"""The `mnistres` command line: parse options, build a RunConfig, call the library, show results.

No training logic lives here, and torch is imported only inside the commands that need
it, so `mnistres --help` answers at once. User mistakes (`MnistresError`) become one line
on stderr and exit code 2, in `_Group.invoke`, the one place that does it.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer
from typer.core import TyperGroup

from mnistres import __version__
from mnistres import config as config_module, interrupts
from mnistres.errors import MnistresError
from mnistres.interrupts import OutputClosed
from mnistres.values import text
from mnistres.wording import plural

EXIT_USAGE, EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED = 2, 130, 141  # 141: as a shell reports a process SIGPIPE ended


def _debug() -> bool:
    return os.environ.get("MNISTRES_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


try:  # typer >= 0.24 carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    from click.exceptions import UsageError


def _tidy(command: Any) -> Any:
    """Help that reads like a well-made CLI's whatever the Typer version: flags show no type (newer
    Typer writes `<bool>`), every other option its metavar, and arguments appear in the usage line as
    CHECKPOINT, [PARAM], IMAGE... (newer Typer writes `{checkpoint}` and `[VALUE...]...`).

    Only per-object hooks are set, and only ones that exist; older Typer already writes help this
    way and is left as it is.
    """
    if getattr(command, "_mnistres_tidy", False):
        return command
    for param in command.params:
        _tidy_param(param)
    if hasattr(command, "get_help_option"):
        original = command.get_help_option

        def get_help_option(ctx: Any) -> Any:
            option = original(ctx)
            if option is not None:
                _tidy_param(option)
            return option

        command.get_help_option = get_help_option
    command._mnistres_tidy = True
    return command


def _tidy_param(param: Any) -> None:
    if getattr(param, "default", 0) is None:
        param.show_default = False  # "not given" is not a default to show (older Typer writes [default: None])
    if getattr(param, "param_type_name", "") == "argument":
        name = param.metavar or (param.name or "").upper()
        shown = name if param.required else f"[{name}]"
        shown += "..." if param.nargs != 1 else ""
        param.get_usage_pieces = lambda ctx: [shown]
        if hasattr(param, "display_type_rich"):
            param.display_type_rich = lambda ctx: None
            param.metavar = name  # in the arguments panel too, without Typer's "..." added to it
    elif not hasattr(param, "display_type_rich"):
        return
    elif getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.display_type_rich = lambda ctx: None
    elif param.metavar is not None:
        metavar = param.metavar
        param.display_type_rich = lambda ctx: metavar


class _Group(TyperGroup):
    """Turns user mistakes and Ctrl-C into one line and an exit code (traceback only with --debug)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy(self)

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        return _tidy(command) if command is not None else None

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        for param in params:  # Typer adds --install-completion and --show-completion after __init__
            _tidy_param(param)
        return params

    def invoke(self, ctx: Any) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                _end_json_mode()
        except UsageError as error:  # an option's value that does not parse, an unknown option or command
            if _debug():
                raise
            where = error.ctx.command_path if error.ctx is not None else "mnistres"
            _error_line(f"Error: {error.format_message()} (see {where} --help)")
            raise typer.Exit(EXIT_USAGE) from None
        except MnistresError as error:
            if _debug():
                raise
            if not getattr(error, "quiet", False):  # a torchrun process whose error rank 0 reports
                _error_line(f"Error: {error}")
            raise typer.Exit(EXIT_USAGE) from None
        except OutputClosed:  # a command that only prints (runs, plugins, predict): stop quietly, like `ls | head`
            raise typer.Exit(EXIT_OUTPUT_CLOSED) from None  # what fed the closed pipe already writes nowhere
        except KeyboardInterrupt as interrupt:
            if _debug():
                raise
            from mnistres.display import console
            from mnistres.distributed import is_main_process

            hint = getattr(interrupt, "hint", "")
            if is_main_process():  # under torchrun every process stops; rank 0 says so
                try:
                    console(stderr=True).print(f"Interrupted: {hint}." if hint else "Interrupted.", style="yellow",
                                               highlight=False, soft_wrap=True)
                except OutputClosed:  # stderr went to the same closed pipe
                    pass
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _error_line(line: str) -> None:
    from mnistres.display import console

    console(stderr=True).print(line, style="red", highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=_Group,
    name="mnistres",
    help="Train, evaluate and inspect the report's ResNet on MNIST.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode="rich",  # help text may use markup; a literal [ is written \\[
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnistres {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks (also MNISTRES_DEBUG=1).")] = False,
) -> None:
    if debug:
        os.environ["MNISTRES_DEBUG"] = "1"


def _default(key: str) -> str:
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


def _names(kind: str) -> Any:
    """Completes a registry name (`relu` after `--activation r`), with its help line where the shell shows one."""
    def complete(incomplete: str) -> list[tuple[str, str]]:
        from mnistres.registry import completion_names, normalise

        typed = normalise(incomplete)
        return [(name, _completion_help(help)) for name, help in completion_names(kind) if name.startswith(typed)]

    return complete


def _config_keys(suffix: str = "") -> Any:
    """Completes a RunConfig key (the sweep's PARAM; `--set KEY=`)."""
    def complete(incomplete: str) -> list[str]:
        from mnistres.config import KEYS

        return [key + suffix for key in KEYS if key.startswith(incomplete.strip().lower())]

    return complete


# Options shared by several commands. Every option names what it takes (INT, PATH, NAME[:OPTS], ...).
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps." + _default("device"))]
# Paths that become RunConfig values arrive as text: Path('') would silently become '.'.
DataDirOpt = Annotated[Optional[str], typer.Option(
    "--data-dir", metavar="PATH", help="Folder holding MNIST/raw/. \\[default: $MNISTRES_DATA_DIR, then the user cache]")]
DatasetOpt = Annotated[Optional[str], typer.Option(
    "--dataset", metavar="NAME", help="mnist | fashion-mnist." + _default("dataset"))]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", metavar="FILE", help="YAML file of RunConfig keys.")]
SetOpt = Annotated[Optional[List[str]], typer.Option(
    "--set", "-s", metavar="KEY=VALUE", help="Any RunConfig key; repeatable; wins over everything else.",
    autocompletion=_config_keys("="))]
# Numbers arrive as text and are typed by RunConfig, so that a bad one is named in our one-line message.
ThreadsOpt = Annotated[Optional[str], typer.Option(
    "--threads", metavar="INT", help="CPU threads for torch; 0: torch's default (one per core). On the CPU the "
                                     "thread count is part of a run's numbers." + _default("threads"))]
PluginOpt = Annotated[Optional[List[str]], typer.Option(
    "--plugin", metavar="MODULE|FILE.py", help="Load a plugin; repeatable (also $MNISTRES_PLUGINS).")]
PresetOpt = Annotated[Optional[str], typer.Option(
    "--preset", metavar="NAME[:KEY=VALUE,...]",
    help="A named bundle of settings: fast or best (see `mnistres plugins`); config file, options and --set win over it.",
    autocompletion=_names("presets"))]
CallbackOpt = Annotated[Optional[List[str]], typer.Option(
    "--callback", metavar="NAME[:KEY=VALUE,...]",
    help="Add a callback to the run's list; repeatable (see `mnistres plugins`).", autocompletion=_names("callbacks"))]


# The run options: declared once, here, and given to `train` and `sweep` by `with_run_options`.
EpochsOpt = Annotated[Optional[str], typer.Option(metavar="INT", help="Passes over the training set." + _default("epochs"))]
BatchSizeOpt = Annotated[Optional[str], typer.Option(metavar="INT", help="Images per step." + _default("batch_size"))]
LrOpt = Annotated[Optional[str], typer.Option(metavar="FLOAT", help="Learning rate." + _default("lr"))]
ActivationOpt = Annotated[Optional[str], typer.Option(
    metavar="NAME[:KEY=VALUE,...]", help="Activation and its options." + _default("activation"),
    autocompletion=_names("activations"))]
OptimizerOpt = Annotated[Optional[str], typer.Option(
    metavar="NAME[:KEY=VALUE,...]", help="Optimizer and its options." + _default("optimizer"),
    autocompletion=_names("optimizers"))]
ScheduleOpt = Annotated[Optional[str], typer.Option(
    metavar="NAME[:KEY=VALUE,...]", help="Learning-rate schedule and its options." + _default("schedule"),
    autocompletion=_names("schedulers"))]
SeedOpt = Annotated[Optional[str], typer.Option(metavar="INT", help="Random seed." + _default("seed"))]
NameOpt = Annotated[Optional[str], typer.Option(metavar="NAME", help="Run directory name. \\[default: from the settings and the time]")]
OutDirOpt = Annotated[Optional[str], typer.Option(
    metavar="PATH", help="Parent folder of run directories." + _default("out_dir"))]
TrainSizeOpt = Annotated[Optional[str], typer.Option(
    metavar="INT", help="Use this many training images (a subset drawn with the seed). \\[default: all]")]
ValSplitOpt = Annotated[Optional[str], typer.Option(
    metavar="FLOAT", help="Hold out this fraction of the training set for validation instead of using the test "
                          "set." + _default("val_split"))]
DownloadOpt = Annotated[Optional[bool], typer.Option(
    "--download/--no-download", help="Fetch missing dataset files. \\[default: --download]")]


def _one_process(command: str) -> None:
    """Refuse to run `command` under torchrun (only train runs there)."""
    from mnistres.distributed import refuse

    refuse(command)


def _use_plugins(plugins: Optional[List[str]]) -> None:
    """Queue --plugin values; they load with the others when a name is first looked up."""
    if plugins:
        from mnistres.registry import request

        request(plugins)


# RunConfig key -> its option, in the order help lists them.
RUN_OPTIONS: dict[str, Any] = {
    "epochs": EpochsOpt, "batch_size": BatchSizeOpt, "lr": LrOpt, "activation": ActivationOpt,
    "optimizer": OptimizerOpt, "schedule": ScheduleOpt, "device": DeviceOpt, "seed": SeedOpt, "data_dir": DataDirOpt,
    "dataset": DatasetOpt, "out_dir": OutDirOpt, "name": NameOpt, "train_size": TrainSizeOpt,
    "val_split": ValSplitOpt, "threads": ThreadsOpt, "download": DownloadOpt,
}


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


@app.command()
@with_run_options(after="config_file")
def train(
    config_file: ConfigOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in the run directory.")] = False,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", metavar="RUN_DIR", help="Continue the interrupted run in this run directory, with its own "
                                            "settings (only --device, --threads, --data-dir, --download may change).")] = None,
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's outcome as one JSON object (the rest goes to stderr).")] = False,
    *,
    run: RunRequest,  # the run and layer options, filled in by with_run_options
) -> None:
    """Train one run; everything it produces goes to OUT_DIR/NAME/."""
    _json_mode(as_json)
    _use_plugins(plugin)
    if resume is None:
        run_config = config_module.build(config_file, run.options, run.sets, callbacks=run.callbacks, preset=run.preset)
    else:
        from mnistres.trainer import resume_config

        given = {"--config": config_file, "--preset": run.preset, "--set": run.sets, "--callback": run.callbacks,
                 "--overwrite": overwrite}
        run_config = resume_config(resume, other_options=[flag for flag, value in given.items() if value],
                                   **run.options)

    from mnistres import display
    from mnistres.distributed import is_main_process
    from mnistres.trainer import train as run_training

    console = display.console(wide=True)
    console.quiet = not is_main_process()  # under torchrun only rank 0 prints
    result = run_training(run_config, console=console, overwrite=overwrite, resume=resume is not None)
    if result.history:
        console.print(display.history_table(result.history, result.summary["val_set"]))
    if result.summary["per_class"]:
        console.print(display.per_class_table(result.summary["per_class"],
                                              f"Per class, validation on the {result.summary['val_set']} set, "
                                              f"final epoch"))
    best = result.summary["best"]
    if result.status == "diverged":
        console.print(f"Diverged: {result.message}", style="yellow", markup=False, soft_wrap=True)
    elif result.message:
        console.print(result.message, markup=False, soft_wrap=True)
    if best:
        final = result.history[-1]
        console.print(
            f"{result.status}: val_acc {final['val_acc']:.4f} on the {result.summary['val_set']} set "
            f"(best {best['val_acc']:.4f} at epoch {best['epoch']}); run directory: {result.run_dir}",
            markup=False, soft_wrap=True, highlight=False,
        )
    else:
        console.print(f"{result.status}; run directory: {result.run_dir}", markup=False, soft_wrap=True)
    if as_json and is_main_process():
        _print_json({"run_dir": str(result.run_dir), "status": result.status, "message": result.message,
                     "history": result.history, "summary": result.summary})


@app.command()
@with_run_options(
    after="config_file",
    seed=Annotated[Optional[str], typer.Option(metavar="INT", help="First seed." + _default("seed"))],
    name=Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Sweep directory name. \\[default: the axes, e.g. lr-sweep]")],
)
def sweep(
    param: Annotated[Optional[str], typer.Argument(
        help="RunConfig key to vary: lr, activation, optimizer, batch_size, schedule, ...", metavar="PARAM",
        show_default=False, autocompletion=_config_keys())] = None,
    values: Annotated[Optional[List[str]], typer.Argument(help="Its values.", metavar="VALUE", show_default=False)] = None,
    grid: Annotated[Optional[List[str]], typer.Option(
        "--grid", metavar="KEY=V1,V2,...", help="One more axis (every combination runs); repeatable.")] = None,
    seeds: Annotated[Optional[int], typer.Option(
        metavar="INT", help="Runs per point, with seeds SEED, SEED+1, ... \\[default: 1, or seeds: in --config]")] = None,
    jobs: Annotated[Optional[int], typer.Option(
        metavar="INT", help="Points run at once, each in its own process. Never changes a point's numbers: every "
                            "point computes with the sweep's --threads. \\[default: as many as the cores hold]")] = None,
    devices: Annotated[Optional[str], typer.Option(
        "--devices", metavar="DEVICE,...", help="Devices for parallel points, one per slot, e.g. cuda:0,cuda:1 "
                                                "(sets --jobs).")] = None,
    executor: Annotated[str, typer.Option(
        metavar="NAME[:OPTIONS]", autocompletion=_names("executors"),
        help="Where points run: local (in this process, or --jobs child processes), here (in this process), "
             "dask (Dask tasks, on a local cluster of --jobs workers, or dask:scheduler=tcp://host:8786, "
             "dask:scheduler_file=FILE; pip install \"mnistres\\[dask]\"), or a plugin's. "
             "See mnistres plugins.")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(
        metavar="ADDRESS", help="Same as --executor dask:scheduler=ADDRESS (kept for a release). \\[default: "
                                "$DASK_SCHEDULER_ADDRESS, else a local cluster]")] = None,
    scheduler_file: Annotated[Optional[str], typer.Option(
        metavar="FILE", help="Same as --executor dask:scheduler_file=FILE (kept for a release).")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip writing report.md at the end.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo every point, finished or not.")] = False,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", "-c", metavar="FILE",
        help="YAML of RunConfig keys, plus optional 'axes:' (each key with a list of values) and 'seeds:' N.")] = None,
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each point's outcome and the results as one JSON object (the rest goes to stderr).")] = False,
    *,
    run: RunRequest,  # the run and layer options, filled in by with_run_options
) -> None:
    """Train one run per value (and per combination with --grid, and per seed), then compare them.

    Every run option applies to every point. Running the same sweep again keeps the points that finished and redoes the others.

    Example: mnistres sweep lr 0.1 0.01 0.001 --seeds 3
    """
    _one_process("sweep")
    _json_mode(as_json)
    _use_plugins(plugin)
    from mnistres import sweep as sweep_module

    if param is not None and not values:
        raise MnistresError(f"give the values to try: mnistres sweep {param} VALUE [VALUE...]")
    command_axes = ([(param, values or [])] if param is not None else []) + [sweep_module.parse_grid(g) for g in grid or []]
    plan = sweep_module.plan_from(config_file, command_axes, run.options, run.sets, seeds, callbacks=run.callbacks,
                                  preset=run.preset)  # --seeds 0 is refused there, not taken for "not given"
    device_list = [d.strip() for d in devices.split(",") if d.strip()] if devices else []

    from mnistres import display, results, rundir

    console = display.console(wide=True)
    outcome = sweep_module.run(plan, jobs=jobs, devices=device_list, console=console, overwrite=overwrite,
                               executor=executor, scheduler=scheduler, scheduler_file=scheduler_file)
    study = results.load_sweep(plan.directory)
    if study.runs:
        console.print(display.results_table(f"Sweep {plan.directory}", results.result_rows(study)))
    statuses = ("completed", "diverged", "failed", "interrupted", "running", "pending")
    counts = ", ".join(f"{outcome.count(s)} {s}" for s in statuses if outcome.count(s))
    kept = sum(state.kept for state in outcome.states)
    console.print(f"{plural(len(outcome.states), 'point')}: {counts}" + (f" ({kept} kept from an earlier run)" if kept else ""),
                  markup=False, highlight=False)
    # Every point without a result is named, with why, and the sweep does not end as a success.
    unfinished = [state for state in outcome.states if state.status not in rundir.FINISHED]
    for state in unfinished:
        console.print(f"  {state.point.name}: {state.message or state.status}", style="red", markup=False,
                      soft_wrap=True)
    written = None
    if not no_report and study.runs:
        from mnistres import report as report_module

        written = report_module.write([study], plan.directory / rundir.REPORT)
        console.print(f"Report: {written.path} ({plural(len(written.figures), 'figure')} beside it)", markup=False, highlight=False)
    if as_json:
        _print_json({"directory": str(plan.directory),
                     "points": [{"name": state.point.name, "values": state.point.values, "seed": state.point.seed,
                                 "status": state.status, "message": state.message, "kept": state.kept}
                                for state in outcome.states],
                     "results": {"headers": list(results.RESULT_HEADERS), "rows": results.result_rows(study)},
                     "report": None if written is None else str(written.path)})
    if unfinished:
        console.print(f"{plural(len(unfinished), 'point')} did not finish; finished points are kept, and this continues "
                      f"the others: {_this_command(drop=('--overwrite',))}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _this_command(drop: tuple[str, ...] = ()) -> str:
    """The command line this process was started with, as a user would type it again (less `drop`)."""
    import shlex

    if Path(sys.argv[0]).name not in ("mnistres", "__main__.py", "mnistres.exe"):  # called as a library
        return "the same command again"
    return shlex.join(["mnistres", *(arg for arg in sys.argv[1:] if arg not in drop)])


@app.command()
def report(
    paths: Annotated[List[Path], typer.Argument(
        metavar="PATH", help="Run directories, sweep directories, or folders of runs.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="FILE.md", help="Markdown file to write; figures (PNG) go beside it. "
                                                  "\\[default: report.md inside the one directory given, else ./report.md]")] = None,
    reference: Annotated[Optional[Path], typer.Option(
        "--reference", metavar="FILE.yaml", help="Published figures to put beside the runs' own, e.g. "
                                                 "examples/reference/course-report.yaml.")] = None,
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results and the report's path as one JSON object.")] = False,
) -> None:
    """Write a Markdown report with figures from finished runs; reads only their files."""
    _json_mode(as_json)
    _use_plugins(plugin)
    from mnistres import display, report as report_module, results

    from mnistres import reference as reference_module

    published = reference_module.load(reference) if reference is not None else None
    studies = results.load_studies(paths)
    written = report_module.write(studies, output or report_module.default_output(paths), published)
    for note in dict.fromkeys(study.note for study in studies if study.note):
        display.console(stderr=True).print(f"Note: {note}.", style="yellow", markup=False, soft_wrap=True)
    if as_json:
        return _print_json({"report": str(written.path), "figures": [str(path) for path in written.figures],
                            "studies": [{"title": study.title, "headers": list(results.RESULT_HEADERS),
                                         "rows": results.result_rows(study), "observations": observed}
                                        for study, observed in zip(studies, written.observations)]})
    console = display.console(wide=True)
    for study, observed in zip(studies, written.observations):
        console.print(display.results_table(study.title, results.result_rows(study)))
        if published is not None and report_module.matched(study, published):
            headers, rows = report_module.reference_rows(study, published)
            console.print(display.plain_table(f"{study.title} beside {published.title}", headers, rows))
        for line in observed:
            console.print(f"• {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"Report: {written.path} ({plural(len(written.figures), 'figure')} beside it)", markup=False, highlight=False)


@app.command("eval")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="A checkpoint (.pt) written by `mnistres train`.", show_default=False)],
    per_class: Annotated[bool, typer.Option("--per-class", help="Support, accuracy, precision, recall, F1 per class.")] = False,
    confusion: Annotated[bool, typer.Option("--confusion", help="The 10x10 confusion matrix.")] = False,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", metavar="NAME", help="mnist | fashion-mnist. \\[default: the one the checkpoint was trained on]")] = None,
    data_dir: DataDirOpt = None,
    split: Annotated[str, typer.Option(
        metavar="SPLIT", help="test: the test file; train: the whole training file; run-train: the images this run "
                              "trained on; run-val: the images it validated on.")] = "test",
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(
        metavar="INT", help="Images per evaluation batch. \\[default: 256 on the CPU, 1024 on a GPU]")] = None,
    threads: Annotated[int, typer.Option(metavar="INT", help="CPU threads for torch (0: torch's default).")] = 0,
    download: Annotated[bool, typer.Option("--download/--no-download", show_default=False,
                                           help="Fetch missing dataset files. \\[default: --download]")] = True,
    images: Annotated[Optional[Path], typer.Option(
        "--images", metavar="FOLDER",
        help="Evaluate on your own images instead: a folder with one subfolder per class, 0 to 9.")] = None,
    no_preprocess: Annotated[bool, typer.Option(
        "--no-preprocess", help="With --images: the images are already in MNIST's form (28x28, white on black).")] = False,
    mistakes: Annotated[int, typer.Option(
        "--mistakes", metavar="N", show_default=False,
        help="Draw the N most confident mistakes as a grid (true → predicted, confidence, index in the file) "
             "and list them (with --json).")] = 0,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="PNG", help="Where --mistakes draws its grid. \\[default: mistakes.png; with --json none, only -o draws]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Measure a checkpoint on a dataset split, or on your own images; the architecture comes from the checkpoint."""
    _one_process("eval")
    _json_mode(as_json)
    _use_plugins(plugin)
    from mnistres import display
    from mnistres.evaluate import evaluate_checkpoint, evaluate_images

    if images is not None:
        result = evaluate_images(checkpoint, images, preprocess=not no_preprocess, device=device,
                                 batch_size=batch_size, threads=threads, mistakes=mistakes, figure=output,
                                 draw=not as_json or output is not None)
    elif no_preprocess:
        raise MnistresError("--no-preprocess applies to --images only")
    else:
        result = evaluate_checkpoint(checkpoint, dataset=dataset, data_dir=data_dir, split=split,
                                     device=device, batch_size=batch_size, download=download, threads=threads,
                                     mistakes=mistakes, figure=output, draw=not as_json or output is not None)
    if as_json:
        return _print_json(result)
    console = display.console()
    warnings = display.console(stderr=True)
    for skipped in result.get("skipped", []):
        warnings.print(f"skipped {skipped['file']}: {skipped['error']}", style="yellow", highlight=False, soft_wrap=True)
    for note in result.get("notes", []):
        warnings.print(f"Note: {note}.", style="yellow", highlight=False, soft_wrap=True)
    console.print(
        f"{result['dataset']} {result['split']} ({result['scored']}): accuracy {result['accuracy']:.4f}  "
        f"loss {result['loss']:.4f}   [{result['checkpoint']}, epoch {result['epoch']}, {result['device']}]",
        highlight=False, soft_wrap=True,
    )
    if per_class:
        console.print(display.per_class_table(result["per_class"]))
    if confusion:
        console.print(display.confusion_table(result["confusion_matrix"]))
    if "mistakes" in result:
        found = result["mistakes"]
        console.print(f"Mistakes: {found['total']:,} in all; the {len(found['shown'])} most confident drawn in "
                      f"{found['figure']}", highlight=False, soft_wrap=True)


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="A checkpoint (.pt) written by `mnistres train`.", show_default=False)],
    inputs: Annotated[List[Path], typer.Argument(
        help="Image files or folders: PNG, JPEG, BMP, or .npy/.npz arrays of images.", metavar="IMAGE",
        show_default=False)],
    no_preprocess: Annotated[bool, typer.Option(
        "--no-preprocess", help="The images are already in MNIST's form (28x28, white digit on black).")] = False,
    top: Annotated[int, typer.Option(metavar="INT", help="How many of the likeliest digits to show (1 to 10).",
                                     min=1, max=10)] = 3,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Show the likeliest digits one per line, each with a bar as long as its probability.")] = False,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps.")] = "auto",
    threads: Annotated[int, typer.Option(metavar="INT", help="CPU threads for torch (0: torch's default).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """The digit in each image, with its confidence and the runners-up.

    Each image is first brought into MNIST's form: grayscale, inverted if the background is light, cropped to the ink, scaled to 20 pixels on its longer side and centred by centre of mass in 28x28.

    Images that cannot be read, or hold no digit, are reported one by one (exit code 1); the others are still predicted.
    """
    _one_process("predict")
    _json_mode(as_json)
    _use_plugins(plugin)
    from mnistres import display
    from mnistres.predict import predict as run_prediction

    result = run_prediction(checkpoint, inputs, preprocess=not no_preprocess, device=device, threads=threads, top=top)
    failed = sum(1 for row in result["predictions"] if "error" in row)
    if as_json:
        _print_json(result)
    else:
        console = display.console(wide=True)
        console.print(display.predictions_table(result["predictions"],
                                                f"{result['checkpoint']} (epoch {result['epoch']}, {result['device']})",
                                                bars=explain))
        warnings = display.console(stderr=True)
        for skipped in result["skipped"]:  # what a folder held that is not read: said, not left out silently
            warnings.print(f"skipped {skipped['file']}: {skipped['error']}", style="yellow", highlight=False,
                           soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command("export")
def export_command(
    checkpoint: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="A checkpoint (.pt) written by `mnistres train`.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE",
                                         help="model.pt2 (torch.export) or model.onnx (ONNX).", show_default=False)],
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Write a self-contained inference artefact: float images (N, 1, 28, 28) in [0, 1] in, 10 logits out.

    The normalisation is built in. The file is loaded back and checked against the checkpoint on test images.
    """
    _one_process("export")
    _json_mode(as_json)
    _use_plugins(plugin)
    from mnistres.export import export

    result = export(checkpoint, output, data_dir=data_dir)
    if as_json:
        return _print_json(result)
    from mnistres import display

    console = display.console()
    console.print(f"Wrote {result['output']} ({result['format']}): input {result['input']}; output "
                  f"{result['output_values']}.", markup=False, highlight=False, soft_wrap=True)
    if result["checked_images"]:
        console.print(f"Checked on {result['checked_on']}: same prediction on {result['same_prediction']:.1%}, "
                      f"largest logit difference {result['max_abs_difference']:.2g}.", markup=False,
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"Not checked: {result['note']}.", style="yellow", markup=False, soft_wrap=True)


@app.command()
def summary(
    config_file: ConfigOpt = None,
    activation: ActivationOpt = None,
    device: DeviceOpt = None,
    sets: SetOpt = None,
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
) -> None:
    """The architecture as a Keras-style table: layer, output shape, parameters."""
    _json_mode(as_json)
    _use_plugins(plugin)
    run_config = config_module.build(config_file, {"activation": activation, "device": device}, sets or [])

    from mnistres import devices, display, model
    from mnistres.resolve import resolve

    network = model.from_config(resolve(run_config))
    network.to(devices.resolve(run_config.device))
    rows, totals = model.summary_rows(network)
    title = (f"ResNet: width {run_config.width}, {run_config.blocks} residual blocks, "
             f"activation {run_config.activation}, input (None, 1, 28, 28)")
    if as_json:
        return _print_json({"title": title, "layers": [{"layer": layer, "type": kind, "output_shape": shape,
                                                        "parameters": count} for layer, kind, shape, count in rows],
                            "totals": totals})
    display.console().print(display.layers_table(rows, totals, title))


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Every activation, optimizer, schedule, callback and preset, with options and source; plugins that failed to load."""
    _json_mode(as_json)
    _use_plugins(plugin)
    from mnistres import display, registry

    listing = {kind: reg.entries() for kind, reg in registry.REGISTRIES.items()}
    if as_json:
        return _print_json(registry.describe())
    console = display.console(wide=True, whole_cells=False)  # help is prose: wrapped at 160, not 400+ columns
    for kind, entries in listing.items():
        console.print(display.registry_table(kind, entries))
    for name, source, error in registry.failed_plugins:
        where = f" ({source})" if source else ""
        console.print(f"Plugin '{name}'{where} failed to load and was skipped: {error}", style="red", markup=False,
                      soft_wrap=True)


@app.command("runs")
def runs_command(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="A folder of run (and sweep) directories, or one run directory.")] = Path("runs"),
    status: Annotated[Optional[str], typer.Option(
        "--status", metavar="STATUS", help="Only runs with this status: completed, diverged, interrupted, failed, "
                                           "running or unreadable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
) -> None:
    """The runs under DIR, newest first: status, epochs, accuracy, the settings that differ, time, size.

    Reads only the runs' own small files (never a checkpoint). A run recorded as running whose process is gone was killed: it is listed as interrupted, with the command that resumes it.
    """
    _json_mode(as_json)
    from mnistres import display, listing

    listed, keys = listing.list_runs(folder, status)
    if as_json:
        return _print_json({"folder": str(folder), "settings": keys,
                            "runs": [run.record(keys) for run in listed]})
    console = display.console(wide=True)
    if not listed:
        console.print(f"No {status + ' ' if status else ''}runs under {folder}.", markup=False, highlight=False)
        return
    console.print(display.runs_table(f"{len(listed)} run{'s' if len(listed) != 1 else ''} under {folder}, newest first",
                                     listed, keys))
    for run in listed:
        if run.hint or (run.note and run.status != "completed"):
            console.print(f"• {run.name}: {'; '.join(part for part in (run.note, run.hint) if part)}",
                          markup=False, highlight=False, soft_wrap=True)


# While a --json command runs, its stdout is kept here and sys.stdout is stderr: whatever else would print
# (a plugin as it loads, a callback as it runs) goes to stderr, and stdout gets the one JSON document.
_json_stdout: list[Any] = []


def _json_mode(as_json: bool) -> None:
    """With --json, from here until the command ends, everything but the JSON goes to stderr."""
    if as_json and not _json_stdout:
        _json_stdout.append(sys.stdout)
        sys.stdout = sys.stderr


def _end_json_mode() -> None:
    if _json_stdout:
        sys.stdout = _json_stdout.pop()


def _print_json(result: Any) -> None:
    """--json: one JSON object on stdout and nothing else (NaN as null, like every file mnistres writes)."""
    from mnistres.atomic import to_json

    out = _json_stdout[0] if _json_stdout else sys.stdout
    try:
        out.write(to_json(result) + "\n")
        out.flush()
    except BrokenPipeError:  # `mnistres runs --json | head -c 100`: as the consoles do (display.console)
        interrupts.output_closed(out)


def main() -> None:
    from mnistres.display import degrade_output
    from mnistres.interrupts import as_started_process

    as_started_process()
    degrade_output()
    try:
        app()
    except SystemExit as done:
        if done.code == 1 and _output_closed(done):
            raise SystemExit(EXIT_OUTPUT_CLOSED) from None
        raise


def _output_closed(done: SystemExit) -> bool:
    """Whether exit code 1 means that stdout's reader went away while Typer printed help (`mnistres --help |
    head -1`): Rich's console ends so (its on_broken_pipe), and Click does (leaving a PacifyFlushWrapper on
    stdout). Like every command's own output, that is 141, as a shell reports SIGPIPE."""
    if type(sys.stdout).__name__ == "PacifyFlushWrapper":
        return True
    trace = done.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return trace is not None and trace.tb_frame.f_code.co_name == "on_broken_pipe"
