"""`mnistres sweep`: a plan from the command line, run through an executor, then the table and the report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mnistres.cli.app import app, json_mode, one_process, print_json, use_plugins
from mnistres.cli.options import (NoteOpt, PluginOpt, RunRequest, TagOpt, config_keys, default_of, registry_names,
                                  with_run_options)
from mnistres.errors import MnistresError
from mnistres.core.wording import plural


@app.command()
@with_run_options(
    after="config_file",
    seed=Annotated[Optional[str], typer.Option(metavar="INT", help="First seed." + default_of("seed"))],
    name=Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Sweep directory name. \\[default: the axes, e.g. lr-sweep]")],
)
def sweep(
    param: Annotated[Optional[str], typer.Argument(
        help="RunConfig key to vary: lr, activation, optimizer, batch_size, schedule, ...", metavar="PARAM",
        show_default=False, autocompletion=config_keys())] = None,
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
        metavar="NAME[:OPTIONS]", autocompletion=registry_names("executors"),
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
    tag: TagOpt = None,
    note: NoteOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each point's outcome and the results as one JSON object (the rest goes to stderr).")] = False,
    *,
    run: RunRequest,  # the run and layer options, filled in by with_run_options
) -> None:
    """Train one run per value (and per combination with --grid, and per seed), then compare them.

    Every run option applies to every point. Running the same sweep again keeps the points that finished and redoes the others.

    Example: mnistres sweep lr 0.1 0.01 0.001 --seeds 3
    """
    one_process("sweep")
    json_mode(as_json)
    use_plugins(plugin)
    from mnistres.sweep import plan as sweep_module

    if param is not None and not values:
        raise MnistresError(f"give the values to try: mnistres sweep {param} VALUE [VALUE...]")
    command_axes = ([(param, values or [])] if param is not None else []) + [sweep_module.parse_grid(g) for g in grid or []]
    plan = sweep_module.plan_from(config_file, command_axes, run.options, run.sets, seeds, callbacks=run.callbacks,
                                  preset=run.preset)  # --seeds 0 is refused there, not taken for "not given"
    device_list = [d.strip() for d in devices.split(",") if d.strip()] if devices else []

    from mnistres.core import display
    from mnistres.runs import results, rundir

    console = display.console(wide=True)
    outcome = sweep_module.run(plan, jobs=jobs, devices=device_list, console=console, overwrite=overwrite,
                               executor=executor, scheduler=scheduler, scheduler_file=scheduler_file,
                               tags=tag or (), note=note)
    study = results.load_sweep(plan.directory)
    if study.runs:
        console.print(display.results_table(f"Sweep {plan.directory}", results.RESULT_HEADERS_SHORT, results.result_rows(study)))
    statuses = ("completed", "diverged", "pruned", "failed", "interrupted", "running", "pending")
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
        from mnistres.reporting import report as report_module

        written = report_module.write([study], plan.directory / rundir.REPORT)
        console.print(f"Report: {written.path} ({plural(len(written.figures), 'figure')} beside it)", markup=False, highlight=False)
    if as_json:
        print_json({"directory": str(plan.directory),
                     "points": [{"name": state.point.name, "values": state.point.values, "seed": state.point.seed,
                                 "status": state.status, "message": state.message, "kept": state.kept}
                                for state in outcome.states],
                     "results": {"headers": list(results.RESULT_HEADERS), "rows": results.result_rows(study)},
                     "report": None if written is None else str(written.path)})
    if unfinished:
        console.print(f"{plural(len(unfinished), 'point')} did not finish; finished points are kept, and this continues "
                      f"the others: {this_command(drop=('--overwrite',))}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def this_command(drop: tuple[str, ...] = ()) -> str:
    """The command line this process was started with, as a user would type it again (less `drop`)."""
    import shlex

    if Path(sys.argv[0]).name not in ("mnistres", "__main__.py", "mnistres.exe"):  # called as a library
        return "the same command again"
    return shlex.join(["mnistres", *(arg for arg in sys.argv[1:] if arg not in drop)])
