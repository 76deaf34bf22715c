"""`mnistres train`: one run, from the command line's options to the library's `trainer.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistres import config as config_module
from mnistres.cli.app import app, json_mode, print_json, use_plugins
from mnistres.cli.options import ConfigOpt, NoteOpt, PluginOpt, RunRequest, TagOpt, with_run_options


@app.command()
@with_run_options(after="config_file")
def train(
    config_file: ConfigOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in the run directory.")] = False,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", metavar="RUN_DIR", help="Continue the interrupted run in this run directory, with its own "
                                            "settings (only --device, --threads, --data-dir, --download may change).")] = None,
    plugin: PluginOpt = None,
    tag: TagOpt = None,
    note: NoteOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's outcome as one JSON object (the rest goes to stderr).")] = False,
    *,
    run: RunRequest,  # the run and layer options, filled in by with_run_options
) -> None:
    """Train one run; everything it produces goes to OUT_DIR/NAME/."""
    json_mode(as_json)
    use_plugins(plugin)
    if resume is None:
        run_config = config_module.build(config_file, run.options, run.sets, callbacks=run.callbacks, preset=run.preset)
    else:
        from mnistres.train.loop import resume_config

        given = {"--config": config_file, "--preset": run.preset, "--set": run.sets, "--callback": run.callbacks,
                 "--overwrite": overwrite}
        run_config = resume_config(resume, other_options=[flag for flag, value in given.items() if value],
                                   **run.options)

    from mnistres.core import display
    from mnistres.train.distributed import is_main_process
    from mnistres.train.loop import train as run_training

    console = display.console(wide=True)
    console.quiet = not is_main_process()  # under torchrun only rank 0 prints
    result = run_training(run_config, console=console, overwrite=overwrite, resume=resume is not None, tags=tag or (),
                          note=note)
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
        print_json({"run_dir": str(result.run_dir), "status": result.status, "message": result.message,
                     "history": result.history, "summary": result.summary})
