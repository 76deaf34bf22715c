"""What the terminal shows: the console every command prints to, and Rich tables. No torch here.

Paths, names and values come from users, and Rich reads `[...]` in text as markup: a run in
`/x/a[/b]` would be an error, and `[bold]` in a name would vanish. So the console never reads
markup (`console()`), and the tables hold user text as `Text`, which is never parsed either.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import os
import sys

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mnistres.core import interrupts, values


# Characters mnistres prints, as ASCII for a terminal or pipe that takes no more (PYTHONIOENCODING=ascii,
# a C locale): output degrades, it never fails. Anything else (a user's path) becomes "?".
ASCII_FORMS = {"—": "-", "–": "-", "…": "...", "±": "+/-", "×": "x", "→": "->", "←": "<-", "•": "*", "≥": ">=",
               "≤": "<=", "·": ".", "’": "'", "‘": "'", "“": '"', "”": '"', "✓": "ok", "✗": "x", "≈": "~", "°": " deg"}
ASCII_ERRORS = "mnistres-ascii"


def _as_ascii(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(ASCII_FORMS.get(c, "?") for c in error.object[error.start:error.end]), error.end


def degrade_output() -> None:
    """Let stdout and stderr write what their encoding cannot hold in ASCII forms instead of failing with a
    UnicodeEncodeError (after a whole run has completed, as it did)."""
    import codecs

    try:
        codecs.lookup_error(ASCII_ERRORS)
    except LookupError:
        codecs.register_error(ASCII_ERRORS, _as_ascii)
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            "—…±é".encode(encoding)
        except UnicodeEncodeError:
            if hasattr(stream, "reconfigure") and getattr(stream, "errors", "strict") == "strict":
                stream.reconfigure(errors=ASCII_ERRORS)
        except LookupError:  # an encoding Python does not know: leave it as it is
            pass


class _Console(Console):
    fit_tables = False  # widen to each table's full width (a log or pipe, where nobody resizes a window)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        # Paths and names come from users: a newline or a right-to-left override in one is shown escaped.
        lines = kwargs.pop("lines", False)  # text of several lines that mnistres wrote (a traceback in a log)
        objects = tuple(_escaped(item, lines) for item in objects)
        if not self.fit_tables:
            return super().print(*objects, **kwargs)
        unbounded = self.options.update_width(10_000)  # a measurement never exceeds the width it is given
        needed = max((Measurement.get(self, unbounded, o).maximum for o in objects if isinstance(o, Table)), default=0)
        if needed <= self.width:
            return super().print(*objects, **kwargs)
        # `mnistres runs | grep completed`: a cell cut to "comple…" would hide the row from grep.
        width, self.width = self.width, needed
        try:
            return super().print(*objects, **kwargs)
        finally:
            self.width = width

    def _render_buffer(self, buffer: Iterable[Any]) -> str:
        text = super()._render_buffer(buffer)
        if self.is_terminal:
            return text
        # A table's title is padded to the table's width: in a file or pipe, hundreds of trailing spaces.
        return "\n".join(line.rstrip(" ") for line in text.split("\n"))

    def on_broken_pipe(self) -> None:
        # Rich exits with status 1 here, which a run in progress would record as its failure; we stop
        # as an interrupted run does (state saved, resumable), and print nothing more to this file.
        self.quiet = True
        interrupts.output_closed(self.file)


def _escaped(item: Any, lines: bool = False) -> Any:
    """`item` with control and bidi characters in its text escaped (`values.printable`): a string, a Text,
    or a Table's title and cells."""
    if isinstance(item, str):
        return values.printable(item, newlines=lines)
    if isinstance(item, Text):
        safe = values.printable(item.plain)
        return item if safe == item.plain else Text(safe, style=item.style)
    if isinstance(item, Table):
        if item.title is not None:
            item.title = _escaped(item.title)
        for column in item.columns:
            cells = getattr(column, "_cells", None)
            if isinstance(cells, list):  # user text is a Text (one line); a str of several lines is ours (bars)
                column._cells = [_escaped(cell, lines=isinstance(cell, str)) for cell in cells]
    return item


def console(*, stderr: bool = False, wide: bool = False, file: Any = None, width: int | None = None,
            no_color: bool | None = None, whole_cells: bool = True) -> Console:
    """The console mnistres prints to: no markup in printed text. `wide`: off a terminal (a log
    file, a pipe), unless COLUMNS says otherwise, 160 columns for text and, with `whole_cells`, as many
    as each table needs to show every cell whole (a table of long prose, `plugins`, wraps its cells
    at 160 instead). Off a terminal no line ends in spaces. When what it prints has no reader any more
    (`| head`), the work stops as interrupted."""
    made = _Console(stderr=stderr, file=file, width=width, markup=False, no_color=no_color)
    if wide and width is None and not made.is_terminal and not os.environ.get("COLUMNS"):
        made = _Console(stderr=stderr, file=file, width=160, markup=False, no_color=no_color)
        made.fit_tables = whole_cells
    return made


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def history_table(history: Iterable[dict[str, Any]], val_set: str) -> Table:
    """The epochs of a run, like Keras's History; columns named as metrics.jsonl and the epoch lines name them."""
    table = Table(title=f"Training history (validation on the {val_set} set)", title_justify="left")
    for header in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "img/s"):
        table.add_column(header, justify="right")
    for row in history:
        table.add_row(str(row["epoch"]), _number(row["train_loss"]), _number(row["train_acc"]),
                      _number(row["val_loss"]), _number(row["val_acc"]), f"{row['lr']:.3g}",
                      f"{row['seconds']:.1f}", f"{row['images_per_s']:,.0f}")
    return table


def per_class_table(rows: Iterable[dict[str, Any]], title: str = "Per class") -> Table:
    table = Table(title=Text(title), title_justify="left")
    for header in ("class", "support", "accuracy", "precision", "recall", "F1"):
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(str(row["class"]), f"{row['support']:,}", _number(row["accuracy"]),
                      _number(row["precision"]), _number(row["recall"]), _number(row["f1"]))
    return table


def confusion_table(matrix: list[list[int]]) -> Table:
    table = Table(title="Confusion matrix (rows: true class, columns: predicted)", title_justify="left")
    table.add_column("true \\ pred", justify="right", style="bold")
    for label in range(len(matrix)):
        table.add_column(str(label), justify="right")
    for label, row in enumerate(matrix):
        cells = [Text(str(n), style="green") if i == label else (Text(str(n), style="red") if n else Text("·"))
                 for i, n in enumerate(row)]
        table.add_row(str(label), *cells)
    return table


def layers_table(rows: list[tuple[str, str, str, int]], totals: dict[str, int], title: str) -> Table:
    table = Table(title=Text(title), title_justify="left", caption_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output shape")
    table.add_column("Param #", justify="right")
    for name, kind, shape, params in rows:
        table.add_row(Text(f"{name} ({kind})"), shape, f"{params:,}")
    table.caption = (
        f"Total params: {totals['trainable'] + totals['non_trainable']:,}   "
        f"Trainable: {totals['trainable']:,}   Non-trainable: {totals['non_trainable']:,}   "
        f"BatchNorm running statistics (buffers): {totals['buffers']:,}"
    )
    return table


def registry_table(kind: str, entries: Iterable[Any]) -> Table:
    table = Table(title=kind, title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("settings" if kind == "presets" else "options (defaults)")
    table.add_column("source")
    table.add_column("help")
    for entry in entries:
        options = ", ".join(_option(entry, key, default) for key, default in entry.options.items()) or "—"
        table.add_row(Text(entry.name), Text(options), Text(entry.source), Text(entry.help))
    return table


def _option(entry: Any, key: str, default: Any) -> str:
    """`momentum=0.0 (0 <= x <= 1)`: the default as users type it, and what else it accepts."""
    limit = entry.limits.get(key) if hasattr(entry, "limits") else None
    accepted = limit.describe() if limit is not None else ""
    return f"{key}={values.text(default)}" + (f" ({accepted})" if accepted else "")


def results_table(title: str, headers: Iterable[str], rows: Iterable[list[str]]) -> Table:
    """A study's results, one row per variant (`results.RESULT_HEADERS_SHORT` and `results.result_rows`)."""
    table = Table(title=Text(title), title_justify="left")
    for number, header in enumerate(headers):
        table.add_column(header, justify="left" if number in (0, 7) else "right", no_wrap=number == 0)
    for row in rows:
        table.add_row(*map(Text, row))
    return table


def plain_table(title: str, headers: list[str], rows: Iterable[list[str]]) -> Table:
    """Text cells under the given headers, the first column left, the others right."""
    table = Table(title=Text(title), title_justify="left")
    for number, header in enumerate(headers):
        table.add_column(header, justify="left" if number == 0 else "right", no_wrap=number == 0)
    for row in rows:
        table.add_row(*map(Text, row))
    return table


def runs_table(title: str, listed: Iterable[Any], keys: list[str]) -> Table:
    """`mnistres runs`: one row per run directory (`listing.Listed`), with the settings `keys`."""
    from mnistres.core.wording import duration

    keys = [key for key in keys if key != "epochs"]  # the epochs column gives the planned ones (done/planned)
    listed = list(listed)
    tagged = any(run.tags for run in listed)
    table = Table(title=Text(title), title_justify="left")
    for header in ("run", "status", "epochs", "best val %", "final val %", *keys, "started (UTC)", "time", "size",
                   *(["tags"] if tagged else [])):
        table.add_column(header, justify="right" if header in ("epochs", "best val %", "final val %", "time", "size")
                         else "left", no_wrap=header == "run")
    for run in listed:
        epochs = "—" if run.epochs_done is None else f"{run.epochs_done}/{run.epochs_planned or '?'}"
        took = "—" if run.seconds is None else duration(run.seconds)
        cells = [run.name, run.status, epochs, _percent(run.best_val_acc), _percent(run.final_val_acc),
                 *(values.shown(key, run.config.get(key)) if key in run.config else "—" for key in keys),
                 run.started[:16].replace("T", " "), took, size_text(run.bytes),
                 *([" ".join(f"#{tag}" for tag in run.tags)] if tagged else [])]
        table.add_row(*map(Text, cells))
    return table


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) and value == value else "—"


def size_text(count: int) -> str:
    """A size in bytes as a person reads it: 512 B, 2.3 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


BAR_WIDTH = 20  # characters of a bar at probability 1 (`predict --explain`)


def predictions_table(rows: Iterable[dict[str, Any]], title: str, *, bars: bool = False) -> Table:
    """One row per image: the digit, its probability and the likeliest others; or why not. With `bars`,
    the likeliest digits one per line, each with a bar as long as its probability."""
    table = Table(title=Text(title), title_justify="left", show_lines=bars)
    table.add_column("image", overflow="fold")
    table.add_column("digit", justify="right")
    table.add_column("confidence", justify="right")
    table.add_column("top")
    for row in rows:
        if "error" in row:
            table.add_row(Text(row["file"]), "—", "—", Text(row["error"], style="red"))
            continue
        if bars:
            ranked = "\n".join(f"{t['class']} {_bar(t['probability'])} {t['probability']:.3f}" for t in row["top"])
        else:
            ranked = "  ".join(f"{t['class']}: {t['probability']:.3f}" for t in row["top"])
        # `ranked` is ours (several lines with --explain): a str, which keeps its newlines; user text is a Text.
        table.add_row(Text(row["file"]), str(row["predicted"]), f"{row['confidence']:.3f}", ranked)
    return table


def _bar(probability: float) -> str:
    """A bar of eighth-blocks, BAR_WIDTH characters at probability 1, padded so the numbers line up."""
    eighths = round(max(0.0, min(1.0, probability)) * BAR_WIDTH * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")).ljust(BAR_WIDTH)


def markdown_table(headers: Any, rows: list[list[Any]]) -> list[str]:
    """A GitHub Markdown table (for reports), and the blank line after it."""
    from tabulate import tabulate

    return [tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=True), ""]
