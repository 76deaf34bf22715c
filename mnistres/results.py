"""Runs as rows of data, for a notebook or a script: the rows `mnistres runs DIR --csv` prints.

    from mnistres import results

    rows = results.rows("runs")                         # a list of dicts, newest run first
    frame = results.dataframe("runs", tags=["baseline"])  # the same as a pandas DataFrame

Each row holds what the run is and how it went (name, status, message, tags, note, epochs_done,
epochs_planned, final_val_acc, best_val_acc, best_epoch, final_train_acc, train_seconds, wall_seconds,
started, finished, bytes, path), then every setting of every listed run (None where a run has none:
one written before the setting existed). Accuracies are fractions, times seconds, sizes bytes. Reads only
the runs' small files, as `mnistres runs` does; no torch. pandas is never required: only `dataframe` needs it.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional

__all__ = ["dataframe", "rows"]


def rows(folder: str | os.PathLike = "runs", *, status: Optional[str] = None,
         tags: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One dict per run under `folder` (newest first), of one `status` if given and with every tag in `tags`
    (its own, or its sweep's or search's)."""
    from mnistres.runs import listing

    listed, _ = listing.list_runs(folder, status, tags)
    return listing.rows(listed)


def dataframe(folder: str | os.PathLike = "runs", *, status: Optional[str] = None, tags: Iterable[str] = ()) -> Any:
    """`rows(...)` as a pandas DataFrame, one row per run (`pip install pandas`)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("mnistres.results.dataframe needs pandas (pip install pandas); "
                          "mnistres.results.rows gives the same rows as plain dicts") from None
    found = rows(folder, status=status, tags=tags)
    frame = pandas.DataFrame(found)
    for column in ("started", "finished"):  # ISO times, some empty
        if column in frame:
            frame[column] = pandas.to_datetime(frame[column], utc=True, errors="coerce")  # "" -> NaT
    return frame
