"""summary.json's schema: the one description of what a run's summary holds, used by every writer
(a run as it starts and as it ends, a point that failed before its run could start) and by the
reader's checks (`problem`), so the file written and the file expected cannot drift apart.

A leaf (no torch): `mnistres runs` and `report` read summaries without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from mnistres.core.values import echo, is_number

# "running" is written when a run starts; a run that finds it with nobody holding the directory's lock
# was killed (or its machine went away) and may be resumed like an interrupted one.
STATUSES = ("running", "completed", "diverged", "interrupted", "failed")


def _entry(*kinds: type) -> Any:
    """A field of the summary, absent from the file while None; `kinds`: the JSON types a reader accepts
    (none: the reader does not rely on it)."""
    return field(default=None, metadata={"kinds": kinds})


@dataclass
class Summary:
    """summary.json, field by field, in the order it is written. Every field is optional: a run that is
    still running, or failed before it began, writes what it knows."""

    status: Optional[str] = _entry(str)  # one of STATUSES
    message: Optional[str] = _entry(str)  # why it stopped, when not simply completed
    epochs_completed: Optional[int] = _entry()
    epochs_planned: Optional[int] = _entry()
    final: Optional[dict] = _entry(dict)  # the last epoch's line of metrics.jsonl
    best: Optional[dict] = _entry(dict)  # epoch, val_acc, val_loss of the best epoch
    val_set: Optional[str] = _entry(str)  # "test" or "held-out"
    train_images: Optional[int] = _entry(int)
    val_images: Optional[int] = _entry(int)
    per_class: Optional[list] = _entry(list)  # the last evaluation's metrics per class
    confusion_matrix: Optional[list] = _entry(list)  # the last evaluation's counts; rows: true class
    parameters: Optional[int] = _entry(int)  # the model's parameter count
    train_seconds: Optional[float] = _entry()  # the epochs' training time, summed
    wall_seconds: Optional[float] = _entry()  # from start to end, this attempt
    started: Optional[str] = _entry(str)  # ISO time, UTC
    host: Optional[str] = _entry(str)  # who writes the run: host and pid
    pid: Optional[int] = _entry(int)
    attempt: Optional[str] = _entry(str)  # the attempt that started it, when named (a sweep's point)
    finished: Optional[str] = _entry(str)  # ISO time, UTC
    device: Optional[str] = _entry(str)  # in words: "cpu (2 threads)"
    versions: Optional[dict] = _entry(dict)  # mnistres, torch, torchvision, python
    numerics: Optional[dict] = _entry(dict)  # what the numbers depend on (`devices.numerics`)
    plugins: Optional[dict] = _entry(dict)  # where each registry name came from
    distributed: Optional[dict] = _entry()  # the processes of the run (`distributed.World.describe`)
    outputs: Optional[list] = _entry(list)  # what the callbacks wrote in the run directory: --overwrite clears it
    diverged_at: Optional[dict] = _entry(dict)  # epoch, step and lr where the loss stopped being finite

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: the fields that are set, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


KINDS = {f.name: f.metadata["kinds"] for f in fields(Summary) if f.metadata["kinds"]}


def problem(summary: Any) -> str:
    """What makes `summary` unusable for the report, sweeps and --resume ("" if nothing)."""
    if not isinstance(summary, dict):
        return f"expected an object, found {type(summary).__name__}"
    for key, kinds in KINDS.items():
        if key in summary and summary[key] is not None and not isinstance(summary[key], kinds):
            return f"{key} holds {type(summary[key]).__name__}, expected {kinds[0].__name__}"
    if summary.get("status") not in STATUSES:
        return f"status {echo(summary.get('status'))} is none of {', '.join(STATUSES)}"
    matrix = summary.get("confusion_matrix") or []
    if matrix and not (len(matrix) <= 1000 and all(isinstance(row, list) and len(row) == len(matrix)
                                                   and all(isinstance(n, int) and n >= 0 for n in row)
                                                   for row in matrix)):
        return "confusion_matrix is not a square table of counts"
    for row in summary.get("per_class") or []:
        if not (isinstance(row, dict) and isinstance(row.get("class"), int)
                and all(row.get(k) is None or is_number(row.get(k)) for k in ("accuracy", "precision", "recall", "f1"))):
            return "per_class holds a row that is not a class's metrics"
    for key in ("diverged_at", "best"):
        for field_name, value in (summary.get(key) or {}).items():
            if not (value is None or is_number(value)):
                return f"{key}.{field_name} {echo(value)} is not a number"
    if any(not isinstance(v, str) for v in (summary.get("versions") or {}).values()):
        return "versions holds something other than text"
    return ""
