"""The Typer app and its error boundary: user mistakes (`MnistresError`) become one line on stderr and
exit code 2, in `ErrorBoundary.invoke`, the one place that does it; Ctrl-C is 130, a closed output 141.
Also what every command does first (`json_mode`, `use_plugins`, `one_process`), --json's one document
(`print_json`), help that reads alike on every Typer version (`_tidy`), and `main`, the console script.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, List, Optional

import typer
from typer.core import TyperGroup

from mnistres import __version__
from mnistres.core import interrupts
from mnistres.errors import MnistresError
from mnistres.core.interrupts import OutputClosed

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


class ErrorBoundary(TyperGroup):
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
                end_json_mode()
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
            from mnistres.core.display import console
            from mnistres.train.distributed import is_main_process

            hint = getattr(interrupt, "hint", "")
            if is_main_process():  # under torchrun every process stops; rank 0 says so
                try:
                    console(stderr=True).print(f"Interrupted: {hint}." if hint else "Interrupted.", style="yellow",
                                               highlight=False, soft_wrap=True)
                except OutputClosed:  # stderr went to the same closed pipe
                    pass
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _error_line(line: str) -> None:
    from mnistres.core.display import console

    console(stderr=True).print(line, style="red", highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=ErrorBoundary,
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


def one_process(command: str) -> None:
    """Refuse to run `command` under torchrun (only train runs there)."""
    from mnistres.train.distributed import refuse

    refuse(command)


def use_plugins(plugins: Optional[List[str]]) -> None:
    """Queue --plugin values; they load with the others when a name is first looked up."""
    if plugins:
        from mnistres.registry import request

        request(plugins)


# While a --json command runs, its stdout is kept here and sys.stdout is stderr: whatever else would print
# (a plugin as it loads, a callback as it runs) goes to stderr, and stdout gets the one JSON document.
_json_stdout: list[Any] = []


def json_mode(as_json: bool) -> None:
    """With --json, from here until the command ends, everything but the JSON goes to stderr."""
    if as_json and not _json_stdout:
        _json_stdout.append(sys.stdout)
        sys.stdout = sys.stderr


def end_json_mode() -> None:
    if _json_stdout:
        sys.stdout = _json_stdout.pop()


def print_json(result: Any) -> None:
    """--json: one JSON object on stdout and nothing else (NaN as null, like every file mnistres writes)."""
    from mnistres.core.atomic import to_json

    out = _json_stdout[0] if _json_stdout else sys.stdout
    try:
        out.write(to_json(result) + "\n")
        out.flush()
    except BrokenPipeError:  # `mnistres runs --json | head -c 100`: as the consoles do (display.console)
        interrupts.output_closed(out)


def print_csv(rows: list[dict[str, Any]]) -> None:
    """--csv: the rows as CSV on stdout and nothing else (after `json_mode(True)`, which sends the rest to
    stderr): a header of every key, in the order the rows first have them."""
    import csv
    import io

    from mnistres.core.values import text

    keys = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:  # numbers as Python writes them (every digit), lists as a,b, nothing for none
        writer.writerow(["" if row.get(key) is None else row[key] if isinstance(row[key], str) else text(row[key])
                         for key in keys])
    out = _json_stdout[0] if _json_stdout else sys.stdout
    try:
        out.write(buffer.getvalue())
        out.flush()
    except BrokenPipeError:
        interrupts.output_closed(out)


def main() -> None:
    from mnistres.core.display import degrade_output
    from mnistres.core.interrupts import as_started_process

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
