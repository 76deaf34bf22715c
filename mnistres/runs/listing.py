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
from typing import Any, Optional

from mnistres.runs import rundir
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

    def record(self, keys: list[str]) -> dict[str, Any]:
        """JSON-ready, with the settings `keys` (those that differ between the listed runs)."""
        return {"name": self.name, "path": str(self.path), "status": self.status, "note": self.note,
                "epochs_done": self.epochs_done, "epochs_planned": self.epochs_planned,
                "best_val_acc": self.best_val_acc, "final_val_acc": self.final_val_acc,
                "settings": {key: self.config.get(key) for key in keys}, "started": self.started,
                "seconds": self.seconds, "bytes": self.bytes, "hint": self.hint}


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


def describe(path: Path, name: str) -> Listed:
    """One run directory from its files; a damaged one is listed as unreadable, with the reason."""
    size = _size(path)
    try:
        summary = rundir.read_summary(path / rundir.SUMMARY)
        history = rundir.read_history(path / rundir.METRICS)
        config = rundir.read_config(path / rundir.CONFIG)
    except MnistresError as error:
        return Listed(path, name, "unreadable", note=str(error), bytes=size,
                      started=_mtime(path))
    status, note = rundir.live_status(path, summary)
    accuracies = [row["val_acc"] for row in history if isinstance(row.get("val_acc"), (int, float))]
    seconds = [row["seconds"] for row in history if isinstance(row.get("seconds"), (int, float))]
    planned = summary.get("epochs_planned", config.get("epochs"))
    return Listed(
        path, name, status, note=note, epochs_done=len(history),
        epochs_planned=planned if isinstance(planned, int) else None,
        best_val_acc=max(accuracies) if accuracies else None,
        final_val_acc=history[-1].get("val_acc") if history else None,
        started=str(summary.get("started") or _mtime(path)), seconds=sum(seconds) if seconds else None,
        bytes=size, config=config,
        hint=rundir.resume_hint(path) if status in RESUMABLE else "",
    )


def list_runs(folder: str | os.PathLike, status: Optional[str] = None) -> tuple[list[Listed], list[str]]:
    """The runs under `folder`, newest first (filtered to one `status`), and the settings whose values
    differ between them."""
    folder = Path(folder)
    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {echo(status)}: expected one of {', '.join(STATUSES)}")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder (runs are written to runs/ unless --out-dir says otherwise)")
    listed = [describe(path, path.relative_to(folder).as_posix() if path != folder else path.name)
              for path in run_dirs(folder)]
    if status is not None:
        listed = [run for run in listed if run.status == status]
    listed = newest_first(listed)
    return listed, differing(listed)


def newest_first(listed: list[Listed]) -> list[Listed]:
    """Runs in the order `runs` lists them: the newest start first, by name where equal."""
    return sorted(listed, key=lambda run: (_when(run.started), run.name), reverse=True)


def differing(listed: list[Listed]) -> list[str]:
    """The settings (not where or how a run ran) whose values are not the same in every listed run,
    in the order the first config that has each gives them."""
    keys: list[str] = []
    for run in listed:
        keys += [key for key in run.config if key not in keys and rundir.is_setting(key)]
    readable = [run for run in listed if run.config]
    return [key for key in keys if len({text(run.config.get(key)) for run in readable}) > 1]


def _size(path: Path) -> int:
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


def _when(started: str) -> float:
    """An ISO time as seconds since the epoch, for ordering ("" and unparsable text: oldest)."""
    try:
        moment = datetime.fromisoformat(started)
    except ValueError:
        return float("-inf")
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
