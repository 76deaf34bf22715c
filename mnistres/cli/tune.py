"""`mnistres tune`: a search of SPACE.yaml on an Optuna study, then the best trials and the best on the test set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistres.cli.app import app, json_mode, one_process, print_json, use_plugins
from mnistres.cli.options import NoteOpt, PluginOpt, RunRequest, TagOpt, registry_names, with_run_options
from mnistres.core.wording import plural



@app.command()
@with_run_options(
    after="space_file",
    seed=Annotated[Optional[str], typer.Option(
        metavar="INT", help="The sampler's seed, and every trial's training seed. \\[default: 0]")],
    name=Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Tune directory name (and the study's). \\[default: SPACE's file name + -tune]")],
    val_split=Annotated[Optional[str], typer.Option(
        metavar="FLOAT", help="The held-out fraction of the training set that trials are chosen on (the test set "
                              "never is). \\[default: 0.1]")],
)
def tune(
    space_file: Annotated[Path, typer.Argument(
        metavar="SPACE.yaml", help="RunConfig keys, each a range (low and high; log, step), a list of choices, or a "
                                   "fixed value.", show_default=False)],
    trials: Annotated[int, typer.Option(
        metavar="INT", help="Trials in all: running the same command again continues to this many (counting "
                            "other processes' on the same study).")] = 20,
    jobs: Annotated[Optional[int], typer.Option(
        metavar="INT", help="Trials run at once. \\[default: as many as the cores hold]")] = None,
    executor: Annotated[str, typer.Option(
        metavar="NAME[:OPTIONS]", autocompletion=registry_names("executors"),
        help="Where trials run: local (this process, or --jobs child processes), here, dask (pip install "
             "\"mnistres\\[dask]\"), or a plugin's; as for sweep.")] = "local",
    sampler: Annotated[str, typer.Option(
        metavar="NAME", help="How parameters are chosen: tpe | random | cmaes | grid.")] = "tpe",
    pruner: Annotated[str, typer.Option(
        metavar="NAME", help="What stops unpromising trials early, from each epoch's held-out accuracy: median | "
                             "hyperband | none.")] = "median",
    storage: Annotated[Optional[str], typer.Option(
        metavar="URL|FILE", help="Where the study lives: a database URL (sqlite:///tune.db, "
                                 "postgresql://...) or a journal file on a filesystem that several tune processes "
                                 "share. \\[default: study.journal in the tune directory]")] = None,
    plugin: PluginOpt = None,
    tag: TagOpt = None,
    note: NoteOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the best trial and the counts as one JSON object "
                                                         "(the rest goes to stderr).")] = False,
    *,
    run: RunRequest,  # the run and layer options, filled in by with_run_options
) -> None:
    """Search settings on an Optuna study: each trial a run directory, unpromising ones pruned, resumable.

    Trials are chosen on a held-out part of the training set; the best trial's model is then measured once on
    the test set. Start the same command in several terminals or machines (with a shared --storage) to work on
    one study together. Needs pip install "mnistres[tune]".

    Example: mnistres tune examples/tune.yaml --trials 24 --train-size 6000 --epochs 4
    """
    one_process("tune")
    json_mode(as_json)
    use_plugins(plugin)
    from mnistres.core import display
    from mnistres.runs import rundir
    from mnistres.runs.results import BEST_SHOWN, rank
    from mnistres.tune import search as search_module
    from mnistres.core.values import brief

    search = search_module.plan_from(space_file, run.options, run.sets, run.callbacks, run.preset, trials=trials,
                                     sampler=sampler, pruner=pruner, storage=storage)
    console = display.console(wide=True)
    outcome = search_module.run(search, jobs=jobs, console=console, executor=executor, tags=tag or (), note=note)
    keys = list(search.space.params)
    ranked = sorted((t for t in outcome.trials if t.value is not None and t.state.name == "COMPLETE"),
                    key=lambda t: rank(t.value, t.number))[:BEST_SHOWN]
    rows = [[f"{t.number}", f"{t.value:.4f}", *(brief(k, v) for k, v in outcome.params(t).items())] for t in ranked]
    if rows:
        console.print(display.results_table(f"Best trials of {search.directory} (held-out accuracy)",
                                            ["trial", "held-out acc", *keys], rows))
    states = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
    words = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running elsewhere"}
    counts = ", ".join(f"{outcome.count(s)} {words[s]}" for s in states if outcome.count(s))
    console.print(f"{plural(sum(outcome.count(s) for s in states), 'trial')} in the study: {counts}",
                  markup=False, highlight=False)
    test = outcome.test
    if test is not None:
        console.print(f"Best: {test['run']}, held-out accuracy {test['held_out_acc']:.4f}; its best.pt on the "
                      f"{test['test_images']:,} test images: accuracy {test['test_acc']:.4f} (measured once, never "
                      f"used to choose)", markup=False, highlight=False, soft_wrap=True)
    console.print(f"Report: mnistres report {search.directory}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        best = outcome.best
        print_json({"directory": str(search.directory), "study": search.study, "storage": search.storage,
                    "trials": {words[s]: outcome.count(s) for s in states},
                    "best": None if best is None else {
                        "trial": best.number, "run": str(search.directory / rundir.trial_name(best.number)),
                        "held_out_acc": best.value, "params": outcome.params(best),
                        "test": test}})
    if outcome.best is None:
        console.print("No trial completed; see the logs in " + str(search.directory / "logs"), style="red",
                      markup=False, soft_wrap=True)
        raise typer.Exit(1)
