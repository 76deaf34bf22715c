"""`mnistres runs`: the run directories under a folder, newest first, as their own files describe them.

Reads summary.json, metrics.jsonl and config.yaml through `rundir`'s readers and asks the lock
whether a "running" run's process is still there; never opens a checkpoint, so a folder of a
thousand runs lists in about a second (docs/benchmarks/tools.md). No torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

from mnistres.runs import about, rundir
from mnistres.errors import ConfigError, MnistresError
from mnistres.core.values import echo, text

# What `runs` shows as a run's status: the six a run records, and a directory it cannot read.
# A run recorded as "running" whose process is gone was killed: it is listed as interrupted.
STATUSES = ("completed", "diverged", "pruned", "interrupted", "failed", "running", "unreadable")
MAX_DEPTH = 3  # runs/, a sweep inside it, its points: deeper folders are not looked into
RESUMABLE = ("interrupted", "failed")


@dataclass
class Listed:
    """One run directory, as `mnistres runs` shows it."""

    path: Path
    name: str  # its path inside the listed folder, e.g. "lr-sweep/lr=0.1,seed=0"
    status: str  # one of STATUSES
    note: str = ""  # why: the run's message, "killed while running", what could not be read
    epochs_done: Optional[int] = None
    epochs_planned: Optional[int] = None
    best_val_acc: Optional[float] = None
    final_val_acc: Optional[float] = None
    started: str = ""  # ISO time the run (last) started, as its summary says
    seconds: Optional[float] = None  # training seconds over its epochs (evaluation excluded)
    bytes: int = 0  # the files in its directory
    config: dict[str, Any] = field(default_factory=dict)
    hint: str = ""  # what to do next, for an interrupted or failed run
    best_epoch: Optional[int] = None  # the first epoch at best_val_acc
    final_train_acc: Optional[float] = None
    wall_seconds: Optional[float] = None  # from start to end, evaluation and saving included
    finished: str = ""  # ISO time it ended, as its summary says
    tags: list[str] = field(default_factory=list)  # its own, then those of the sweep or search it is in
    remark: str = ""  # the user's note about it (about.yaml; `note` above is mnistres's)

    def record(self, keys: list[str]) -> dict[str, Any]:
        """JSON-ready, with the settings `keys` (those that differ between the listed runs)."""
        return {"name": self.name, "path": str(self.path), "status": self.status, "note": self.note,
                "epochs_done": self.epochs_done, "epochs_planned": self.epochs_planned,
                "best_val_acc": self.best_val_acc, "final_val_acc": self.final_val_acc,
                "settings": {key: self.config.get(key) for key in keys}, "started": self.started,
                "seconds": self.seconds, "bytes": self.bytes, "hint": self.hint,
                "about": {"tags": self.tags, "note": self.remark}}

    def row(self, keys: list[str]) -> dict[str, Any]:
        """One flat row (`mnistres runs --csv`, `mnistres.results`): what the run is and how it went, then
        its value of each of `keys` (settings; None where it has none)."""
        return {"name": self.name, "status": self.status, "message": self.note, "tags": " ".join(self.tags),
                "note": self.remark, "epochs_done": self.epochs_done, "epochs_planned": self.epochs_planned,
                "final_val_acc": self.final_val_acc, "best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch,
                "final_train_acc": self.final_train_acc, "train_seconds": self.seconds,
                "wall_seconds": self.wall_seconds, "started": self.started, "finished": self.finished,
                "bytes": self.bytes, "path": str(self.path), **{key: self.config.get(key) for key in keys}}


def run_dirs(folder: Path) -> list[Path]:
    """The run directories (those holding summary.json) in `folder` and below, MAX_DEPTH levels at most."""
    found: list[Path] = []

    def walk(path: Path, depth: int) -> None:
        try:
            entries = sorted((e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)
                              and not e.name.startswith(".") and e.name != rundir.LOGS), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            child = Path(entry.path)
            if rundir.is_run(child):
                found.append(child)
            elif depth < MAX_DEPTH:
                walk(child, depth + 1)

    if rundir.is_run(folder):
        return [folder]
    walk(folder, 1)
    return found


def describe(path: Path, name: str, top: Optional[Path] = None,
             known: Optional[dict[Path, list[str]]] = None) -> Listed:
    """One run directory from its files; a damaged one is listed as unreadable, with the reason. `top`:
    the folder listed, whose sweeps' and searches' tags the run takes on too."""
    size = folder_bytes(path)
    own, unreadable = about.read_quietly(path)
    tags = list(dict.fromkeys([*own.tags, *(about.inherited(path, top, known) if top is not None else [])]))
    try:
        summary = rundir.read_summary(path / rundir.SUMMARY)
        history = rundir.read_history(path / rundir.METRICS)
        config = rundir.read_config(path / rundir.CONFIG)
    except MnistresError as error:
        return Listed(path, name, "unreadable", note=str(error), bytes=size,
                      started=_mtime(path), tags=tags, remark=own.note)
    status, note = rundir.live_status(path, summary)
    accuracies = [row["val_acc"] for row in history if isinstance(row.get("val_acc"), (int, float))]
    seconds = [row["seconds"] for row in history if isinstance(row.get("seconds"), (int, float))]
    planned = summary.get("epochs_planned", config.get("epochs"))
    best = max(accuracies) if accuracies else None
    wall = summary.get("wall_seconds")
    return Listed(
        path, name, status, note="; ".join(part for part in (note, unreadable) if part), epochs_done=len(history),
        epochs_planned=planned if isinstance(planned, int) else None,
        best_val_acc=best, final_val_acc=history[-1].get("val_acc") if history else None,
        best_epoch=next((row.get("epoch") for row in history if row.get("val_acc") == best), None) if best is not None else None,
        final_train_acc=history[-1].get("train_acc") if history else None,
        started=str(summary.get("started") or _mtime(path)), seconds=sum(seconds) if seconds else None,
        wall_seconds=wall if isinstance(wall, (int, float)) else None, finished=str(summary.get("finished") or ""),
        bytes=size, config=config, tags=tags, remark=own.note,
        hint=rundir.resume_hint(path) if status in RESUMABLE else "",
    )


def list_runs(folder: str | os.PathLike, status: Optional[str] = None,
              tags: Iterable[str] = ()) -> tuple[list[Listed], list[str]]:
    """The runs under `folder`, newest first (filtered to one `status`, and to those with every tag in
    `tags`, their own or their sweep's), and the settings whose values differ between them."""
    folder = Path(folder)
    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {echo(status)}: expected one of {', '.join(STATUSES)}")
    wanted = [about.check_tag(tag) for tag in tags]
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder (runs are written to runs/ unless --out-dir says otherwise)")
    known: dict[Path, list[str]] = {}  # each sweep's or search's tags, read once
    listed = [describe(path, path.relative_to(folder).as_posix() if path != folder else path.name, folder, known)
              for path in run_dirs(folder)]
    if status is not None:
        listed = [run for run in listed if run.status == status]
    listed = [run for run in listed if all(tag in run.tags for tag in wanted)]
    listed = newest_first(listed)
    return listed, differing(listed)


def settings_of(listed: list[Listed]) -> list[str]:
    """Every config key the listed runs have (differing or shared), in the order the first config that
    has each gives them, but where the run is kept (`name`, `out_dir`: a row's name and path say it)."""
    keys: list[str] = []
    for run in listed:
        keys += [key for key in run.config if key not in keys and key not in rundir.PLACE_KEYS]
    return keys


def rows(listed: list[Listed]) -> list[dict[str, Any]]:
    """The listed runs as flat rows with every setting: `runs --csv` and `mnistres.results`."""
    keys = settings_of(listed)
    return [run.row(keys) for run in listed]


def study_rows(studies: Iterable[Any]) -> list[dict[str, Any]]:
    """`report --csv`: the rows of the studies' runs (`results.Study`), each led by its study and variant."""
    found: list[tuple[dict[str, str], Listed]] = []
    known: dict[Path, list[str]] = {}
    for study in studies:
        for variant in study.variants:
            for run in variant.runs:
                top = study.path if study.path is not None and study.path in run.path.parents else None
                name = run.path.relative_to(top).as_posix() if top is not None else run.path.name
                found.append(({"study": study.title, "variant": variant.label}, describe(run.path, name, top, known)))
    keys = settings_of([run for _, run in found])
    return [{**lead, **run.row(keys)} for lead, run in found]


def newest_first(listed: list[Listed]) -> list[Listed]:
    """Runs in the order `runs` lists them: the newest start first, by name where equal."""
    return sorted(listed, key=lambda run: (started_at(run.started), run.name), reverse=True)


def differing(listed: list[Listed]) -> list[str]:
    """The settings (not where or how a run ran) whose values are not the same in every listed run,
    in the order the first config that has each gives them."""
    keys: list[str] = []
    for run in listed:
        keys += [key for key in run.config if key not in keys and rundir.is_setting(key)]
    readable = [run for run in listed if run.config]
    return [key for key in keys if len({text(run.config.get(key)) for run in readable}) > 1]


def folder_bytes(path: Path) -> int:
    """Bytes of the files in the run directory and its subfolders (a callback's, e.g. tensorboard/)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _mtime(path: Path) -> str:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        return ""


def started_at(started: str) -> float:
    """An ISO time as seconds since the epoch, for ordering ("" and unparsable text: oldest)."""
    try:
        moment = datetime.fromisoformat(started)
    except ValueError:
        return float("-inf")
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
