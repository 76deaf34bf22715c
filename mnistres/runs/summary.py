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
# "pruned": a `mnistres tune` trial its study's pruner stopped early as not promising (a result, not resumed).
STATUSES = ("running", "completed", "diverged", "pruned", "interrupted", "failed")


def _entry(*kinds: type, means: str) -> Any:
    """A field of the summary, absent from the file while None; `kinds`: the JSON types a reader accepts
    (none: the reader does not rely on it); `means`: what it holds, for the reference pages."""
    return field(default=None, metadata={"kinds": kinds, "means": means})


@dataclass
class Summary:
    """summary.json, field by field, in the order it is written. Every field is optional: a run that is
    still running, or failed before it began, writes what it knows."""

    status: Optional[str] = _entry(str, means="One of running, completed, diverged, pruned, interrupted, failed.")
    message: Optional[str] = _entry(str, means="Why it stopped, when not simply completed.")
    epochs_completed: Optional[int] = _entry(means="Epochs finished so far.")
    epochs_planned: Optional[int] = _entry(means="Epochs the config asks for.")
    final: Optional[dict] = _entry(dict, means="The last epoch's line of metrics.jsonl.")
    best: Optional[dict] = _entry(dict, means="epoch, val_acc and val_loss of the best epoch.")
    val_set: Optional[str] = _entry(str, means="test, or held-out (with val_split).")
    train_images: Optional[int] = _entry(int, means="Training images used.")
    val_images: Optional[int] = _entry(int, means="Validation images.")
    per_class: Optional[list] = _entry(list, means="The last evaluation's metrics per class (class, support, accuracy, "
                                                    "precision, recall, f1).")
    confusion_matrix: Optional[list] = _entry(list, means="The last evaluation's counts; rows: true class, columns: "
                                                           "predicted.")
    parameters: Optional[int] = _entry(int, means="The model's parameter count.")
    train_seconds: Optional[float] = _entry(means="The epochs' training time, summed.")
    wall_seconds: Optional[float] = _entry(means="From start to end of this attempt.")
    started: Optional[str] = _entry(str, means="ISO time, UTC.")
    host: Optional[str] = _entry(str, means="The machine that writes the run.")
    pid: Optional[int] = _entry(int, means="Its process id.")
    attempt: Optional[str] = _entry(str, means="The attempt that started it, when named (a sweep's point).")
    finished: Optional[str] = _entry(str, means="ISO time, UTC.")
    device: Optional[str] = _entry(str, means="In words, e.g. cpu (2 threads).")
    versions: Optional[dict] = _entry(dict, means="mnistres, torch, torchvision, python.")
    numerics: Optional[dict] = _entry(dict, means="What the numbers depend on: device, threads (threads_by_epoch where "
                                                   "the epochs' differ), CPU instruction set, precision, torch version.")
    plugins: Optional[dict] = _entry(dict, means="Where each registry name the run used came from.")
    distributed: Optional[dict] = _entry(means="Under torchrun: the processes of the run.")
    outputs: Optional[list] = _entry(list, means="What the callbacks wrote in the run directory (--overwrite clears "
                                                  "it).")
    diverged_at: Optional[dict] = _entry(dict, means="epoch, step and lr where the loss stopped being finite.")

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
