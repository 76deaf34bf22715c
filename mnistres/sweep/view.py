"""The live view of a sweep: one row per point in a terminal, one line per event elsewhere.

`PointState` is what the runners update and the view shows; the view knows a point only by its
name and config (`ShownPoint`), so it does not depend on the sweep module that drives it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from rich.live import Live
from rich.table import Table
from rich.text import Text

from mnistres.core.wording import duration, plural



class ShownPoint(Protocol):
    """What the view reads of a sweep point."""

    name: str  # its run directory's name

    @property
    def config(self) -> Any: ...  # its RunConfig (epochs, out_dir)


@dataclass
class PointState:
    """What the live view shows of one point."""

    point: ShownPoint
    status: str = "pending"  # pending | running | completed | diverged | pruned | failed | interrupted (+ "kept")
    kept: bool = False  # finished in an earlier invocation, not run now
    epoch: int = 0  # epoch in progress (in-process) or last completed (child process)
    fraction: float = 0.0  # of the current epoch, when known
    val_acc: Optional[float] = None  # latest epoch's
    message: str = ""
    started: float = 0.0
    seconds: float = 0.0
    device: str = ""
    attempt: str = ""  # names the current start of the point; its outcome in summary.json carries it

STYLES = {"pending": "dim", "running": "cyan", "completed": "green", "diverged": "yellow", "pruned": "blue",
          "failed": "red", "interrupted": "magenta"}


class SweepView:
    """Redrawn by Rich a few times a second from the states the runners update."""

    def __init__(self, states: list[PointState], console: Any) -> None:
        self.states, self.console = states, console
        self.live = Live(self, console=console, refresh_per_second=4, transient=False) if console.is_terminal else None

    def __enter__(self) -> "SweepView":
        kept = sum(state.kept for state in self.states)
        self.console.print(
            f"Sweep of {plural(len(self.states), 'point')} into {self.states[0].point.config.out_dir}"
            + (f"; {kept} already finished, kept" if kept else ""),
            markup=False, highlight=False, soft_wrap=True,
        )
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.stop()

    def started(self, state: PointState, device: str) -> None:
        state.status, state.started, state.device = "running", time.time(), device
        if not self.live:
            self._line(state, f"started on {device}")

    def finished(self, state: PointState) -> None:
        state.seconds = time.time() - state.started if state.started else 0.0  # 0: it never started
        if not self.live:
            accuracy = f"val_acc {state.val_acc:.4f}, " if isinstance(state.val_acc, float) else ""
            reason = f": {state.message}" if state.message and state.status != "completed" else ""
            self._line(state, f"{state.status} ({accuracy}{duration(state.seconds)}{self._done()}){reason}")

    def _done(self) -> str:
        """How far the whole is, for a point's end line."""
        done = sum(s.status not in ("pending", "running") for s in self.states)
        return f"; {done} of {len(self.states)} done"

    def _line(self, state: PointState, text: str) -> None:
        """One line for a log: tagged with the point's own place in the sweep, so that with --jobs (points
        starting and ending out of order) each end can be matched to its start."""
        place = next(i for i, s in enumerate(self.states, 1) if s is state)
        self.console.print(f"[{place}/{len(self.states)}] {state.point.name}: {text}",
                           markup=False, highlight=False, soft_wrap=True)

    def __rich__(self) -> Table:
        table = Table(title_justify="left", box=None, pad_edge=False)
        for header, justify in (("point", "left"), ("status", "left"), ("epoch", "right"),
                                ("val acc", "right"), ("time", "right"), ("on", "left")):
            table.add_column(header, justify=justify)
        now = time.time()
        for state in self.states:
            status = f"{state.status} (kept)" if state.kept else state.status
            table.add_row(Text(state.point.name), Text(status, style=STYLES.get(state.status, "")),
                          *progress_cells(state, now), Text(state.device))  # the device, and with Dask the machine
        return table


def progress_cells(state: PointState, now: float) -> tuple[str, str, str]:
    """A point's epoch (with the share of a running one), its latest validation accuracy and its time, as the
    live tables show them."""
    epochs = state.point.config.epochs
    if state.status == "running":
        epoch = f"{state.epoch}/{epochs}" + (f" {state.fraction:4.0%}" if state.fraction else "")
        elapsed = duration(now - state.started)
    else:
        epoch = f"{state.epoch}/{epochs}" if state.epoch else ""
        elapsed = duration(state.seconds) if state.seconds else ""
    return epoch, f"{state.val_acc:.4f}" if isinstance(state.val_acc, float) else "", elapsed
