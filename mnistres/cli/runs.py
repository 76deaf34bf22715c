"""`mnistres runs`: the run directories under a folder, with their status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistres.cli.app import app, json_mode, print_json


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
    json_mode(as_json)
    from mnistres.core import display
    from mnistres.runs import listing

    listed, keys = listing.list_runs(folder, status)
    if as_json:
        return print_json({"folder": str(folder), "settings": keys,
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
