"""`mnistres runs`: the run directories under a folder, with their status (`runs [list]`), and what a user
keeps on them (`runs tag`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from mnistres.cli.app import ErrorBoundary, app, json_mode, print_csv, print_json
from mnistres.errors import MnistresError

LIST = "list"


class RunsGroup(ErrorBoundary):
    """`mnistres runs DIR` lists, as it always has: anything that is not one of the group's commands is
    handed to `list` (a folder named like a command is written ./tag)."""

    default_command = LIST

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


runs_app = typer.Typer(cls=RunsGroup, help="The runs under a folder, and their tags and notes.",
                       context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(runs_app, name="runs")


@runs_app.command(LIST)
def runs_command(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="A folder of run (and sweep) directories, or one run directory.")] = Path("runs"),
    status: Annotated[Optional[str], typer.Option(
        "--status", metavar="STATUS", help="Only runs with this status: completed, diverged, interrupted, failed, "
                                           "running or unreadable.")] = None,
    tag: Annotated[Optional[List[str]], typer.Option(
        "--tag", metavar="TAG", help="Only runs with this tag (their own, or their sweep's or search's); "
                                     "repeat it for runs with every one.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    as_csv: Annotated[bool, typer.Option(
        "--csv", help="Print one CSV row per run and nothing else: name, status, message, tags, note, epochs, "
                      "final and best accuracy, times, size, path, then every setting.")] = False,
) -> None:
    """The runs under DIR, newest first: status, epochs, accuracy, the settings that differ, time, size, tags.

    Reads only the runs' own small files (never a checkpoint). A run recorded as running whose process is gone was killed: it is listed as interrupted, with the command that resumes it. `mnistres runs DIR` is `mnistres runs list DIR`; `mnistres runs tag RUN TAG...` tags a run, a sweep or a search, and gives it a note.
    """
    if as_json and as_csv:
        raise MnistresError("--json and --csv: choose one")
    json_mode(as_json or as_csv)
    from mnistres.core import display
    from mnistres.runs import listing

    listed, keys = listing.list_runs(folder, status, tag or ())
    if as_csv:
        return print_csv(listing.rows(listed))
    if as_json:
        return print_json({"folder": str(folder), "settings": keys,
                           "runs": [run.record(keys) for run in listed]})
    console = display.console(wide=True)
    if not listed:
        wanted = " ".join(filter(None, [status, *(f"#{t}" for t in tag or ())]))
        console.print(f"No {wanted + ' ' if wanted else ''}runs under {folder}.", markup=False, highlight=False)
        return
    console.print(display.runs_table(f"{len(listed)} run{'s' if len(listed) != 1 else ''} under {folder}, newest first",
                                     listed, keys))
    for run in listed:
        if run.hint or (run.note and run.status != "completed"):
            console.print(f"• {run.name}: {'; '.join(part for part in (run.note, run.hint) if part)}",
                          markup=False, highlight=False, soft_wrap=True)
    for run in listed:
        if run.remark:
            console.print(f"• {run.name} (note): {run.remark}", markup=False, highlight=False, soft_wrap=True)


@runs_app.command("tag")
def tag_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A run, sweep or tune directory.", show_default=False)],
    tags: Annotated[Optional[List[str]], typer.Argument(
        metavar="TAG", help="Tags to add (one word each: letters, digits, . : + / = @ - _).", show_default=False)] = None,
    remove: Annotated[Optional[List[str]], typer.Option(
        "--remove", metavar="TAG", help="A tag to take off; repeat for several.")] = None,
    note: Annotated[Optional[str], typer.Option(
        "--note", metavar="TEXT", help="The note to keep on it (replaces the one before; \"\" removes it).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print its tags and note as one JSON object.")] = False,
) -> None:
    """Add tags to a run (or a sweep or search: its points and trials show them too), take them off, or set its note; with nothing to change, show them.

    They are kept in about.yaml in its directory, apart from the run's own record, and may change at any time, while it trains too. `mnistres runs DIR --tag TAG` lists the runs with a tag.
    """
    json_mode(as_json)
    from mnistres.core import display
    from mnistres.runs import about

    about.check_directory(run)
    before = about.read(run)
    after = about.changed(before, add=tags or (), remove=remove or (), note=note)
    if after != before:
        about.write(run, after)
    if as_json:
        return print_json({"path": str(run), **after.record()})
    console = display.console()
    console.print(f"{run}: " + (" ".join(f"#{t}" for t in after.tags) if after.tags else "no tags"),
                  markup=False, highlight=False, soft_wrap=True)
    if after.note:
        console.print(f"note: {after.note}", markup=False, highlight=False, soft_wrap=True)


def _size(count: int) -> str:
    from mnistres.core.display import size_text  # rich, only once a command runs

    return size_text(count)


def _at_terminal() -> bool:
    import sys

    return sys.stdin.isatty()


def _confirm(question: str, yes: bool) -> bool:
    """--yes, or a person at a terminal who says so; elsewhere (a script, a pipe) nothing is removed."""
    if yes:
        return True
    if not _at_terminal():
        raise MnistresError(f"{question} Not at a terminal to ask: add --yes to go ahead, or --dry-run to see what would go")
    return typer.confirm(question, default=False)


@runs_app.command("rm")
def rm_command(
    paths: Annotated[List[Path], typer.Argument(
        metavar="PATH", help="Run, sweep or tune directories to remove whole; with a filter, folders whose runs it "
                             "chooses from.", show_default=False)],
    status: Annotated[Optional[str], typer.Option(
        "--status", metavar="STATUS", help="Only runs with this status (failed, interrupted, diverged, ...).")] = None,
    before: Annotated[Optional[str], typer.Option(
        "--before", metavar="DATE", help="Only runs started before this date or time (UTC unless it says), e.g. "
                                         "2026-12-01.")] = None,
    tag: Annotated[Optional[List[str]], typer.Option(
        "--tag", metavar="TAG", help="Only runs with this tag (theirs, or their sweep's); repeatable.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed, and remove nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before removing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was (or would be) removed as one JSON object.")] = False,
) -> None:
    """Remove runs: named ones whole (a sweep or search with all its runs), or those under a folder that a filter chooses.

    Asks first, unless --yes. Never removes what a running process works in. A sweep's point removed is pending again: the same sweep run again trains it, and only it. A search's trials go only with the whole search (its study keeps them).
    """
    json_mode(as_json)
    from mnistres.core import display
    from mnistres.runs import housekeeping

    chosen, kept = housekeeping.choose(paths, status=status, before=before, tags=tag or ())
    filtered = status is not None or before is not None or bool(tag)
    busy = [(item, why) for item in chosen for why in [housekeeping.in_use(item.path)] if why]
    if busy and not filtered:
        item, why = busy[0]
        raise MnistresError(f"{item.name} is in use: {why}; nothing was removed")
    kept += [f"{item.name}: {why}" for item, why in busy]
    chosen = [item for item in chosen if item not in [b for b, _ in busy]]
    total = sum(item.bytes for item in chosen)
    console = display.console(stderr=as_json)
    if chosen:
        console.print("Would remove (a dry run):" if dry_run else "To remove:", markup=False, highlight=False)
    for item in chosen:
        console.print(f"  {item.kind} {item.name}" + (f" ({item.status})" if item.status else "") +
                      f", {_size(item.bytes)}", markup=False, highlight=False, soft_wrap=True)
    if kept:
        console.print("Kept:", markup=False, highlight=False)
    for line in kept:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    done = False
    if chosen and not dry_run:
        what = f"{len(chosen)} {'directory' if len(chosen) == 1 else 'directories'} ({_size(total)})"
        if _confirm(f"Remove {what}?", yes):
            for item in chosen:
                housekeeping.remove(item)
            done = True
            console.print(f"Removed {what}.", markup=False, highlight=False)
        else:
            console.print("Nothing removed.", markup=False, highlight=False)
    elif not chosen:
        console.print("Nothing to remove.", markup=False, highlight=False)
    if as_json:
        print_json({"chosen": [{"path": str(item.path), "name": item.name, "kind": item.kind, "status": item.status,
                                "bytes": item.bytes} for item in chosen],
                    "kept": kept, "bytes": total, "dry_run": dry_run, "done": done})


@runs_app.command("gc")
def gc_command(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", help="A folder of runs (and sweeps and searches), or one run directory.")] = Path("runs"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be freed, and remove nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was (or would be) freed as one JSON object.")] = False,
) -> None:
    """Free the space that finished runs no longer need: the last.pt of every completed, diverged or pruned run (best.pt is kept), and what interrupted writes and removals left.

    A finished run cannot be resumed, so its last.pt (half of a run's size) only takes room; eval, predict, serve, export and report read best.pt and the run's small files. Runs in progress, interrupted or failed keep everything.
    """
    json_mode(as_json)
    from mnistres.core import display
    from mnistres.runs import housekeeping

    if not folder.is_dir():
        raise MnistresError(f"{folder} is not a folder")
    found = housekeeping.freeable(folder)
    total = sum(item.bytes for item in found)
    console = display.console(stderr=as_json)
    if not dry_run:
        for item in found:
            housekeeping.free(item)
    for item in found:
        console.print(f"{'would free' if dry_run else 'freed'} {_size(item.bytes)}: {item.run}: {item.path.name} "
                      f"({item.why})", markup=False, highlight=False, soft_wrap=True)
    console.print(f"{'Would free' if dry_run else 'Freed'} {_size(total)} in {len(found)} "
                  f"{'file' if len(found) == 1 else 'files'} under {folder}.", markup=False, highlight=False)
    if as_json:
        print_json({"folder": str(folder), "files": [{"path": str(item.path), "run": item.run, "bytes": item.bytes,
                                                      "why": item.why} for item in found],
                    "bytes": total, "dry_run": dry_run})
