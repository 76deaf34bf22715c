"""Driving a sweep's pending points through an executor: the one loop every executor shares.

It starts points while the executor has room, shows each as running once it knows where, reads
progress and outcomes from the points' run directories (never from the executor), stops the running
points on Ctrl-C or SIGTERM, and ends the sweep in one line if the executor itself is lost. An
executor (`api.Executor`, registered in `registry.executors`) only starts, polls and stops tasks.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from mnistres.core import atomic, yamlfile
from mnistres.train import resume
from mnistres.runs import rundir
from mnistres.api import Executor
from mnistres.errors import MnistresError
from mnistres.core.interrupts import shielded
from mnistres.registry import requested
from mnistres.sweep.view import PointState
from mnistres.core.wording import plural

POLL_S = 0.5  # how often the sweep looks at its running points
STOP_WAIT_S = 60  # how long a stopped point may take to record itself as interrupted


class ExecutorLost(MnistresError):
    """The executor (a Dask scheduler, say) went away while the sweep ran."""


def new_attempt() -> str:
    """A name for one start of a point, recorded with its outcome in summary.json."""
    return uuid.uuid4().hex[:16]


def point_log(point: Any) -> Path:
    """Where a point's output goes: logs/<point>.log in the sweep directory."""
    return rundir.point_log(Path(point.config.out_dir), point.name)


class Task:
    """One start of one point (`api.PointTask`): what an executor is handed."""

    def __init__(self, state: PointState, view: Any, threads: int) -> None:
        point = state.point
        self.state, self.view = state, view
        self.name, self.run_dir, self.log = point.name, point.run_dir, point_log(point)
        self.attempt = state.attempt = new_attempt()
        self.plugins = requested()
        self.threads = threads
        self.resuming = resume.resumable(point.run_dir, point.config.to_dict())
        self.device = point.config.device
        self.resolved = point.resolved

    def point_file(self, *, device: Optional[str] = None, absolute: bool = False) -> Path:
        config = self.resolved.config if device is None else self.resolved.config.replace(device=device)
        if absolute:  # a worker started in another folder would read a relative place from there
            from mnistres.train import data as data_module

            config = config.replace(out_dir=str(Path(config.out_dir).resolve()),
                                    data_dir=str(data_module.resolve_data_dir(config.data_dir).resolve()))
        path = rundir.point_config_file(Path(self.resolved.config.out_dir), self.name)
        atomic.write_text(path, yamlfile.dump(config.to_dict()))
        return path

    def started(self, where: str) -> None:
        self.view.started(self.state, where)

    def report(self, *, epoch: Optional[int] = None, fraction: Optional[float] = None,
               val_acc: Optional[float] = None) -> None:
        state = self.state
        state.epoch = state.epoch if epoch is None else epoch
        state.fraction = state.fraction if fraction is None else fraction
        state.val_acc = state.val_acc if val_acc is None else val_acc


def drive(executor: Executor, pending: list[PointState], view: Any, threads: int, *,
          more: Optional[Callable[[], Optional[PointState]]] = None,
          ended: Optional[Callable[[PointState], None]] = None) -> None:
    """Run `pending` through `executor`, at most `executor.capacity` at a time, until each has an outcome.
    Ctrl-C or SIGTERM stops the running points (each records itself as interrupted) and propagates.

    `more` (a search's next trial) is asked for another point whenever a slot is free and `pending` is
    used up, until it answers None; `ended` hears of each point that ended by itself (not one stopped)."""
    queue, running = list(pending), []
    starting: Optional[PointState] = None  # a point being started (an executor may run it to its end in `start`)
    try:
        while queue or running or more is not None:
            while len(running) < executor.capacity:
                if not queue and more is not None:
                    found = more()
                    if found is None:
                        more = None  # nothing more to start: finish the running ones
                    else:
                        queue.append(found)
                if not queue:
                    break
                starting = queue.pop(0)
                running.append((starting, executor.start(Task(starting, view, threads))))
                starting = None
            what = executor.lost()
            if what:
                _lost(executor, what, running, view)
            any_ended = False
            for state, handle in list(running):
                if state.status == "pending":  # shown as running once its run directory says where, or it ended
                    where = rundir.running_on(state.point.run_dir, state.attempt)
                    if where is not None or executor.done(handle):
                        view.started(state, where or executor.place)
                read_progress(state)
                if executor.done(handle):
                    running.remove((state, handle))
                    _finish(executor, state, handle, view, stopping=False)
                    if ended is not None:
                        ended(state)
                    any_ended = True
            if running and not any_ended:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        with shielded():  # a second Ctrl-C or SIGTERM must not leave points running
            executor.stop()
            for state, handle in running + ([(starting, None)] if starting is not None else []):
                _finish(executor, state, handle, view, stopping=True)
        raise


def _finish(executor: Executor, state: PointState, handle: Any, view: Any, *, stopping: bool) -> None:
    """The point's outcome, as its attempt recorded it in its run directory. One that recorded none was
    stopped by this sweep (`stopping`: interrupted, resumable) or died (failed). If the executor knows why
    it failed (Dask gave up on its task), that is the outcome, unless the point finished or the sweep stopped."""
    why = executor.finished(handle) if handle is not None else ""
    read_progress(state)
    found = rundir.outcome(state.point.run_dir, state.attempt)
    if found is not None:
        state.status, state.message = found
    elif stopping:
        state.status = "interrupted"
        state.message = f"interrupted after epoch {state.epoch}" if state.epoch else "interrupted before the run started"
    else:
        state.status = "failed"
        state.message = f"its process ended without recording an outcome (see {point_log(state.point)})"
    if why and not stopping and state.status not in rundir.FINISHED:
        recorded = f" (its last attempt: {state.message})" if state.message and state.status != "failed" else ""
        state.status, state.message = "failed", f"{why}{recorded}"
    view.finished(state)


def read_progress(state: PointState) -> None:
    """Epoch and accuracy of a running point, from the metrics file it writes after each epoch."""
    last = rundir.latest_epoch(state.point.run_dir)
    if last is not None:
        state.epoch, state.val_acc = last["epoch"], last["val_acc"]


def _lost(executor: Executor, what: str, running: list[tuple[PointState, Any]], view: Any) -> None:
    """The executor is gone: each started point stops itself (its task can no longer reach the sweep) and
    records how; a point that never started stays pending. Then one line says so; the rerun continues."""
    states = [state for state, _ in running]
    started = [state for state in states
               if state.status != "pending" or rundir.running_on(state.point.run_dir, state.attempt) is not None]
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline and any(rundir.outcome(s.point.run_dir, s.attempt) is None for s in started):
        time.sleep(POLL_S)
    for state, handle in running:
        if state in started:
            _finish(executor, state, None, view, stopping=True)
    not_started = len(states) - len(started)
    raise ExecutorLost(
        f"lost {what} while the sweep ran: {plural(len(started), 'running point')} stopped and recorded "
        f"{'itself' if len(started) == 1 else 'themselves'}, {not_started} not started (still pending); "
        f"{executor.gone_hint}")
