"""Removing runs and the files finished runs no longer need: `mnistres runs rm` and `mnistres runs gc`.

Nothing is removed while a process works in it (any lock below the directory, or its sweep's, held by a
live process, or by one on another machine that cannot be asked). A directory goes whole or not at all:
it is first renamed to a hidden name beside it (one step), then deleted; a deletion cut short leaves only
that hidden folder, which listings skip and a later `rm` or `gc` finishes. A sweep point removed is pending
again in its sweep.yaml, so the same sweep run again trains it (and only it); a search's trials stay in its
study, so they are removed only with the whole search. No torch.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from mnistres.core import atomic
from mnistres.core.lock import LOCK_FILE, holder_of, holder_state
from mnistres.errors import ConfigError, WriteError, reason
from mnistres.runs import listing, rundir

REMOVING = ".mnistres-removing-"  # the hidden name a directory has while it is deleted


@dataclass
class Chosen:
    """One directory to remove."""

    path: Path
    name: str  # as `runs` names it, or the path given
    kind: str  # run | sweep | search
    status: str  # a run's; "" for a sweep or search
    bytes: int


def parse_before(text: Optional[str]) -> Optional[datetime]:
    """--before DATE: runs started before it (an ISO date or time; UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--before {text!r}: expected a date or time such as 2026-12-01 or 2026-12-01T12:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def choose(paths: Iterable[Path], *, status: Optional[str] = None, before: Optional[str] = None,
           tags: Iterable[str] = ()) -> tuple[list[Chosen], list[str]]:
    """What `runs rm` removes: each path whole (a run, sweep or search directory), or with a filter the runs
    under it that pass every one (a sweep point alone; a search's trial never alone). Returns the chosen and
    what a filter matched but keeps, each with why."""
    tags, moment = list(tags), parse_before(before)
    filtered = status is not None or moment is not None or bool(tags)
    chosen: list[Chosen] = []
    kept: list[str] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"{path} is not a folder")
        if not filtered:
            kind = rundir.kind(path)
            if not kind:
                raise ConfigError(f"{path} is a folder of runs, not a run, sweep or tune directory: name the runs, or "
                                  f"choose them with --status, --before or --tag")
            if kind == "run" and rundir.is_tune(path.parent):
                raise ConfigError(f"{path} is a trial of the search {path.parent}, whose study keeps it: remove the "
                                  f"search whole, or keep it (`mnistres runs gc` frees its checkpoints)")
            described = listing.describe(path, str(path)) if kind == "run" else None
            chosen.append(Chosen(path, str(path), kind, described.status if described else "", listing.folder_bytes(path)))
            continue
        listed, _ = listing.list_runs(path, status, tags)
        for run in listed:
            if moment is not None and not listing.started_at(run.started) < moment.timestamp():
                continue
            if rundir.is_tune(run.path.parent):
                kept.append(f"{run.name}: a trial of a search (its study keeps it; remove the search whole)")
                continue
            chosen.append(Chosen(run.path, run.name, "run", run.status, run.bytes))
    unique = {os.path.realpath(item.path): item for item in chosen}
    return list(unique.values()), kept


def in_use(path: Path) -> str:
    """Why `path` may not be removed now (a live process holds a lock in it or its sweep's), or ""."""
    folders = [path] + ([path.parent] if rundir.is_sweep(path.parent) else [])
    for top in folders:
        below = os.walk(top) if top == path else [(str(top), [], [LOCK_FILE])]
        for folder, _, files in below:
            if LOCK_FILE not in files:
                continue
            state = holder_state(Path(folder))
            if state != "none":
                holder = holder_of(Path(folder))
                where = "its sweep" if top != path else ("it" if Path(folder) == path else Path(folder).name)
                return (f"{'a process on another machine' if state == 'elsewhere' else 'a running process'} works in "
                        f"{where} ({holder})")
    return ""


def remove(item: Chosen) -> None:
    """Remove one chosen directory: renamed aside in one step, then deleted; a sweep point's sweep.yaml
    says it is pending again."""
    path = item.path
    aside = path.parent / f"{REMOVING}{uuid.uuid4().hex[:8]}"
    try:
        if path.is_symlink():  # a link to a run kept elsewhere: the link goes, not what it points at
            path.unlink()
            return
        os.rename(path, aside)
    except OSError as error:
        raise WriteError(f"cannot remove {path}: {reason(error)}") from None
    shutil.rmtree(aside, ignore_errors=True)
    if rundir.is_sweep(path.parent):
        mark_pending(path.parent, path.name)


def mark_pending(sweep_dir: Path, point: str) -> None:
    """A removed point in its sweep's record: pending again, as a point never run is."""
    record = rundir.read_sweep(sweep_dir)
    changed = False
    for entry in record.get("points", []):
        if isinstance(entry, dict) and entry.get("name") == point and entry.get("status") != "pending":
            entry["status"] = "pending"
            entry.pop("message", None)
            entry.pop("host", None)
            changed = True
    if changed:
        rundir.write_sweep(sweep_dir, record)


def leftovers(folder: Path) -> list[Path]:
    """Hidden folders of deletions cut short, anywhere `runs` looks."""
    found: list[Path] = []
    for parent, folders, _ in os.walk(folder):
        depth = Path(parent).relative_to(folder).parts
        if len(depth) >= listing.MAX_DEPTH:
            folders[:] = []
        found += [Path(parent) / name for name in folders if name.startswith(REMOVING)]
        folders[:] = [name for name in folders if not name.startswith(".")]
    return found


# --- gc ----------------------------------------------------------------------------------------------

@dataclass
class Freeable:
    """A file a finished run does not need."""

    path: Path
    run: str
    bytes: int
    why: str


def freeable(folder: Path) -> list[Freeable]:
    """What `runs gc` removes under `folder`: last.pt of finished runs (completed, diverged or pruned:
    none of them can be resumed, and best.pt keeps the model that eval, predict, serve and export load;
    a run that kept no best.pt keeps its last.pt), the temporary files of writes a crash cut short,
    and deletions cut short."""
    found: list[Freeable] = []
    for path in listing.run_dirs(folder):
        name = path.relative_to(folder).as_posix() if path != folder else path.name
        status = rundir.stored_status(path)
        last, best = path / rundir.LAST, path / rundir.BEST
        if status in rundir.FINISHED and last.is_file() and not last.is_symlink() and best.is_file():
            found.append(Freeable(last, name, last.stat().st_size, f"{status}: cannot be resumed, best.pt kept"))
        if holder_state(path) == "none":
            for leftover in _partial_writes(path):
                found.append(Freeable(leftover, name, _bytes(leftover), "a write cut short"))
    for aside in leftovers(folder):
        found.append(Freeable(aside, aside.name, _bytes(aside), "a removal cut short"))
    return found


def _partial_writes(run_dir: Path) -> list[Path]:
    """Temporary files of interrupted writes beside the run's files (atomic's names for them)."""
    return atomic.leftovers(run_dir, (*rundir.RUN_FILES, rundir.ABOUT))


def _bytes(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return listing.folder_bytes(path)
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def free(item: Freeable) -> None:
    try:
        if item.path.is_dir() and not item.path.is_symlink():
            shutil.rmtree(item.path)
        else:
            item.path.unlink(missing_ok=True)
    except OSError as error:
        raise WriteError(f"cannot remove {item.path}: {reason(error)}") from None

