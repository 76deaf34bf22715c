"""The runs under RUNS_DIR as `serve` shows them: found by `runs.listing`'s rules, read by `rundir`'s
readers, and nothing outside RUNS_DIR.

A run, sweep or tune directory is served only when no link inside it leads out of RUNS_DIR (`confined`):
the listing never follows a linked folder, and a file linked to /etc/passwd or to another user's
runs is refused with its whole directory. Every run and group is named by its path inside RUNS_DIR
(its id), and a request names one of the ids found, never a path to open.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from mnistres.errors import MnistresError
from mnistres.runs import listing, rundir

RESCAN_SECONDS = 2.0  # the runs found are looked for again after this long (a page polls every few seconds)
MISTAKES_SHOWN = 36  # a run's page shows its most confident mistakes, up to this many


class NotFound(MnistresError):
    """A run, group or checkpoint that is not among those served (HTTP 404)."""


@dataclass
class Group:
    """A sweep or tune directory: its runs together, with a report."""

    id: str  # its path inside RUNS_DIR ("." for RUNS_DIR itself)
    path: Path
    kind: str  # "sweep" or "tune"


@dataclass
class Found:
    """What a scan of RUNS_DIR found: the run directories served, by id, the groups, and what was refused."""

    runs: dict[str, Path]
    groups: dict[str, Group]
    refused: dict[str, str]  # id -> why it is not served
    at: float
    checkpoints: Optional[list[dict[str, Any]]] = None  # made when first asked for


class Library:
    """The runs, groups and checkpoints under one folder (`root`, None when serving only a checkpoint)."""

    def __init__(self, root: Optional[Path]) -> None:
        self.root = Path(root) if root is not None else None
        self._real = os.path.realpath(self.root) if self.root is not None else ""
        self._found: Optional[Found] = None
        self._lock = threading.Lock()

    # --- where files may come from ---------------------------------------------------------------

    def inside(self, path: str | os.PathLike) -> bool:
        """Whether `path`, links resolved, lies inside RUNS_DIR."""
        if self.root is None:
            return False
        real = os.path.realpath(path)
        return real == self._real or real.startswith(self._real.rstrip(os.sep) + os.sep)

    def confined(self, folder: Path) -> str:
        """Why `folder` may not be served ("" when it may): a link inside it that leads out of RUNS_DIR."""
        if not self.inside(folder):
            return "it lies outside the served folder"
        for place, folders, files in os.walk(folder):  # os.walk does not go into linked folders
            for name in folders + files:
                entry = os.path.join(place, name)
                if os.path.islink(entry) and not self.inside(entry):
                    return f"{Path(entry).relative_to(folder).as_posix()} links outside the served folder"
        return ""

    # --- what is there ---------------------------------------------------------------------------

    def found(self) -> Found:
        """The runs and groups under RUNS_DIR, looked for again when the last look is RESCAN_SECONDS old."""
        with self._lock:
            if self._found is None or time.monotonic() - self._found.at > RESCAN_SECONDS:
                self._found = self._scan()
            return self._found

    def _scan(self) -> Found:
        runs: dict[str, Path] = {}
        groups: dict[str, Group] = {}
        refused: dict[str, str] = {}
        if self.root is None or not self.root.is_dir():
            return Found(runs, groups, refused, time.monotonic())
        for path in listing.run_dirs(self.root):
            run_id = self.id_of(path)
            problem = self.confined(path)
            if problem:
                refused[run_id] = problem
                continue
            runs[run_id] = path
        # A sweep or tune directory holds its runs directly: the served folder itself, or a run's parent.
        for folder in dict.fromkeys([self.root] + [path.parent for path in runs.values() if path != self.root]):
            kind = "tune" if rundir.is_tune(folder) else "sweep" if rundir.is_sweep(folder) else ""
            if not kind:
                continue
            group_id = self.id_of(folder) if folder != self.root else "."
            problem = self.confined(folder)
            if problem:
                refused[group_id] = problem
            else:
                groups[group_id] = Group(group_id, folder, kind)
        return Found(runs, groups, refused, time.monotonic())

    def id_of(self, path: Path) -> str:
        """A run's or group's id: its path inside RUNS_DIR, as `mnistres runs` names it (ValueError outside it)."""
        if self.root is None:
            raise ValueError(f"{path} is not inside a served folder")
        return path.relative_to(self.root).as_posix() if path != self.root else path.name

    def run(self, run_id: str) -> Path:
        path = self.found().runs.get(run_id)
        if path is None:
            raise NotFound(f"no run {run_id!r} under the served folder")
        return path

    def group(self, group_id: str) -> Group:
        group = self.found().groups.get(group_id)
        if group is None:
            raise NotFound(f"no sweep or tune directory {group_id!r} under the served folder")
        return group

    # --- what the pages show ---------------------------------------------------------------------

    def listed(self) -> dict[str, Any]:
        """What `mnistres runs --json` says of the served runs, each with its id, and the groups."""
        found = self.found()
        described = [listing.describe(path, run_id) for run_id, path in found.runs.items()]
        described = listing.newest_first(described)
        keys = listing.differing(described)
        return {"folder": str(self.root) if self.root is not None else None, "settings": keys,
                "runs": [{"id": run.name, **run.record(keys), "path": run.name} for run in described],
                "groups": [{"id": group.id, "kind": group.kind, "title": group.path.name}
                           for group in found.groups.values()],
                "refused": [{"id": key, "why": why} for key, why in found.refused.items()]}

    def detail(self, run_id: str) -> dict[str, Any]:
        """One run: its listing line, config, summary (per-class metrics, confusion matrix) and history."""
        path = self.run(run_id)
        described = listing.describe(path, run_id)
        record = {"id": run_id, **described.record(list(described.config)), "path": run_id}
        try:
            summary = rundir.read_summary(path / rundir.SUMMARY)
            history = rundir.read_history(path / rundir.METRICS)
        except MnistresError:  # listed as unreadable, with the reason in its note
            summary, history = {}, []
        mistakes = path / rundir.MISTAKES
        return {**record, "config": described.config, "summary": summary, "history": history,
                "checkpoints": [self.checkpoint_id(path / name) for name in (rundir.BEST, rundir.LAST)
                                if (path / name).is_file()],
                "has_mistakes": mistakes.is_file()}

    def mistakes(self, run_id: str, count: int = MISTAKES_SHOWN) -> dict[str, Any]:
        """A completed run's most confident mistakes (as its mistakes.npz keeps them), with their pixels."""
        kept = rundir.read_mistakes(self.run(run_id))
        if kept is None:
            return {"total": None, "scored": None, "source": None, "mistakes": []}
        shown = kept.first(count)
        rows = shown.rows()
        for row, pixels in zip(rows, shown.images):
            row["pixels"] = pixels.tolist()
        return {"total": kept.total, "scored": kept.scored, "source": kept.source, "mistakes": rows}

    # --- checkpoints -----------------------------------------------------------------------------

    def checkpoint_id(self, path: Path) -> str:
        """A checkpoint's id: its run's id, a slash, its file name."""
        return f"{self.id_of(path.parent)}/{path.name}"

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every served run's best.pt and last.pt, best first, by the run's best validation accuracy (looked for
        again with the runs, every RESCAN_SECONDS at most: a script's predictions need not read every run)."""
        scan = self.found()
        if scan.checkpoints is None:
            scan.checkpoints = self._checkpoints(scan)
        return [dict(checkpoint) for checkpoint in scan.checkpoints]

    def _checkpoints(self, scan: Found) -> list[dict[str, Any]]:
        found = []
        for run_id, path in scan.runs.items():
            described = listing.describe(path, run_id)
            for name in (rundir.BEST, rundir.LAST):
                if (path / name).is_file():
                    found.append({"id": self.checkpoint_id(path / name), "run": run_id, "file": name,
                                  "status": described.status, "dataset": described.config.get("dataset"),
                                  "best_val_acc": described.best_val_acc, "epochs_done": described.epochs_done})
        found.sort(key=lambda c: (c["status"] != "completed", -(c["best_val_acc"] or 0.0), c["file"] != rundir.BEST,
                                  c["run"]))
        return found

    def checkpoint(self, checkpoint_id: str) -> Path:
        """The file a checkpoint id names: one of a served run's best.pt or last.pt."""
        run_id, _, name = checkpoint_id.rpartition("/")
        path = self.found().runs.get(run_id)
        if path is None or name not in (rundir.BEST, rundir.LAST) or not (path / name).is_file():
            raise NotFound(f"no checkpoint {checkpoint_id!r} under the served folder")
        return path / name
