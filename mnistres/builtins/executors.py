"""The built-in executors, registered exactly as a plugin's would be: `here` (points one after another in
the sweep's process), `local` (child processes on this machine; in this process when one runs at a time)
and `dask` (Dask tasks: `dask_executor`, imported only when chosen). The loop that drives them is
`driver`'s; what an executor is, `api.Executor`.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Optional, Sequence

from mnistres.api import Callback, Executor, PointTask
from mnistres.registry import executors


def where(device: str, threads: int) -> str:
    """Where a point runs in this sweep's machine, in the words a point on Dask reports from its summary
    (`cpu (2 threads) on host`)."""
    import socket

    from mnistres.train import devices as devices_module

    return f"{devices_module.describe(devices_module.torch_device(device), threads)} on {socket.gethostname()}"


class _Progress(Callback):
    """A point's progress, for the live view, from inside its run."""

    def __init__(self, task: PointTask) -> None:
        self.task = task

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        self.task.report(epoch=epoch, fraction=0.0)

    def on_batch_end(self, trainer: Any, step: int) -> None:
        self.task.report(fraction=step / trainer.steps_per_epoch)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        self.task.report(val_acc=logs["val_acc"])


class HereExecutor(Executor):
    """One point after another in the sweep's own process (no start-up cost per point): `start` runs it."""

    def __init__(self, *, device: Optional[str] = None) -> None:
        self.device = device  # instead of each point's own (--devices with one device)
        self.capacity = 1

    def start(self, task: PointTask) -> Any:
        from mnistres.core import atomic
        from mnistres.train import devices as devices_module
        from mnistres.core.display import console as make_console
        from mnistres.sweep.worker import run_point

        resolved = task.resolved if self.device is None else task.resolved.with_execution(device=self.device)
        task.started(where(resolved.config.device, resolved.config.threads or devices_module.default_threads()))
        with atomic.open_log(task.log, append=task.resuming) as log:
            _, message = run_point(resolved, attempt=task.attempt, extra_callbacks=[_Progress(task)],
                                        console=make_console(file=log, width=120, no_color=True))
        return (task, message)

    def done(self, handle: Any) -> bool:
        return True

    def finished(self, handle: Any) -> str:
        """The run's own error, when it could not record it in its run directory."""
        from mnistres.runs import rundir

        task, message = handle
        return "" if rundir.outcome(task.run_dir, task.attempt) is not None else message


class LocalExecutor(Executor):
    """`jobs` points at a time, each a child process (`python -m mnistres.worker`, started by `worker.child`)
    with its own log and the sweep's thread count, or, with `devices`, one device per slot.

    Children run in their own process group, so a Ctrl-C reaches the sweep once and is passed on to each
    child exactly once (`stop`); SIGTERM to the sweep is handled the same way."""

    def __init__(self, *, jobs: int, devices: Sequence[str] = ()) -> None:
        self.capacity, self.devices = jobs, list(devices)
        self.slots: dict[int, subprocess.Popen] = {}

    def start(self, task: PointTask) -> Any:
        from mnistres.core import atomic
        from mnistres.sweep import worker
        from mnistres.core.interrupts import deferred

        slot = next(slot for slot in range(self.capacity) if slot not in self.slots)
        device = self.devices[slot % len(self.devices)] if self.devices else task.device
        point_file = task.point_file(device=device)
        log = atomic.open_log(task.log, append=task.resuming)
        try:
            with deferred():  # an interrupt here waits until the child is in `slots`, where `stop` finds it
                self.slots[slot] = worker.child(point_file, task.attempt, task.plugins, log, task.threads)
        finally:
            log.close()  # the child holds its own copy
        task.started(where(device, task.resolved.config.threads or task.threads))
        return slot

    def done(self, handle: Any) -> bool:
        return self.slots[handle].poll() is not None

    def finished(self, handle: Any) -> str:
        self.slots.pop(handle, None)
        return ""

    def stop(self) -> None:
        running = list(self.slots.values())
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in running:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@executors.register("here", help="points one after another in the sweep's own process")
def here(*, jobs: int, devices: Sequence[str] = (), threads: int = 0) -> Executor:
    from mnistres.errors import ConfigError

    if len(devices) > 1:
        raise ConfigError("--executor here runs one point at a time, on one device: give --devices one device, "
                          "or use --executor local")
    return HereExecutor(device=devices[0] if devices else None)


@executors.register("local", help="--jobs points at once as child processes on this machine (one at a time: "
                                  "in the sweep's own process)")
def local(*, jobs: int, devices: Sequence[str] = (), threads: int = 0) -> Executor:
    if jobs == 1 and len(devices) <= 1:
        return HereExecutor(device=devices[0] if devices else None)
    return LocalExecutor(jobs=jobs, devices=devices)


@executors.register("dask", help="points as Dask tasks, on a local cluster of --jobs workers or on a running "
                                 "scheduler (pip install \"mnistres[dask]\")",
                    options={"scheduler": "", "scheduler_file": ""})
def dask(*, jobs: int, devices: Sequence[str] = (), threads: int = 0, scheduler: str = "",
         scheduler_file: str = "") -> Executor:
    from mnistres.sweep.on_dask import DaskExecutor

    return DaskExecutor(jobs=jobs, devices=devices, scheduler=scheduler, scheduler_file=scheduler_file)
