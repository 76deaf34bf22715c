"""A sweep's or tune's report, as `serve` shows it: `mnistres report` written into the server's own
folder (never into RUNS_DIR), rendered to HTML, and written again only when the runs' files change.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mnistres.errors import MnistresError
from mnistres.runs import rundir
from mnistres.serve.library import Group, Library, NotFound
from mnistres.serve.markdown import to_html

# The files whose change makes a report stale: the group's own, and each run's that the report reads.
_GROUP_FILES = (rundir.SWEEP_FILE, rundir.TUNE_FILE, rundir.TEST_RESULT)
_RUN_FILES = (rundir.SUMMARY, rundir.METRICS, rundir.CONFIG, rundir.MISTAKES)


@dataclass
class Rendered:
    stamp: str  # the files' sizes and times when it was written
    folder: Path
    html: str | None
    message: str  # why there is no report yet, when html is None
    figures: set[str] = field(default_factory=set)


class Reports:
    """Reports of the served groups, kept in `folder` (the server's temporary folder)."""

    def __init__(self, library: Library, folder: Path) -> None:
        self.library = library
        self.folder = Path(folder)
        self._rendered: dict[str, Rendered] = {}
        self._lock = threading.Lock()  # one report written at a time: matplotlib is not shared between threads

    def report(self, group_id: str) -> dict[str, Any]:
        group = self.library.group(group_id)
        rendered = self._current(group)
        return {"id": group.id, "kind": group.kind, "title": group.path.name, "html": rendered.html,
                "message": rendered.message, "figures": sorted(rendered.figures)}

    def figure(self, group_id: str, name: str) -> bytes:
        """A figure of the group's current report: only a name the report wrote."""
        rendered = self._rendered.get(group_id)
        if rendered is None or name not in rendered.figures:
            raise NotFound(f"no figure {name!r} in the report of {group_id!r}")
        return (rendered.folder / name).read_bytes()

    def _current(self, group: Group) -> Rendered:
        stamp = _stamp(group.path)
        with self._lock:
            rendered = self._rendered.get(group.id)
            if rendered is not None and rendered.stamp == stamp:
                return rendered
            folder = self.folder / hashlib.sha256(group.id.encode()).hexdigest()[:16]
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            rendered = self._write(group, folder, stamp)
            self._rendered[group.id] = rendered
            return rendered

    def _write(self, group: Group, folder: Path, stamp: str) -> Rendered:
        from mnistres.reporting import report
        from mnistres.runs import results

        try:
            study = results.load_tune(group.path) if group.kind == "tune" else results.load_sweep(group.path)
            written = report.write([study], folder / rundir.REPORT)
        except MnistresError as error:  # no finished run yet, or a file it cannot read: said on the page
            return Rendered(stamp, folder, None, str(error))
        names = {path.name for path in written.figures if path.parent == folder}

        def image_src(name: str) -> str | None:
            return f"/api/report/figure?id={quote(group.id)}&name={quote(name)}" if name in names else None

        markdown = (folder / rundir.REPORT).read_text(encoding="utf-8")
        return Rendered(stamp, folder, to_html(markdown, image_src), "", names)


def _stamp(folder: Path) -> str:
    """Sizes and modification times of the files a group's report is made from."""
    parts = []
    candidates = [folder / name for name in _GROUP_FILES]
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.is_symlink() and rundir.is_run(child):
            candidates += [child / name for name in _RUN_FILES]
    for path in candidates:
        try:
            info = path.stat()
        except OSError:
            continue
        parts.append(f"{path}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
