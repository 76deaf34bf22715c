"""The `dask` executor: a sweep's points on Dask, on an embedded LocalCluster or a scheduler the user started.

Each point is one Dask task (`run_point_task`) that runs `python -m mnistres.worker` as a child of
the Dask worker (tied to it: the child never outlives its worker) and stops it when the sweep
asks (a Dask `Event`). The point's outcome is read from its run directory, as for the local
executor, so every machine must see the sweep's --out-dir and --data-dir at the same paths. A task
whose worker dies is run again elsewhere by Dask; the worker resumes the point from its last
completed epoch. `distributed` is imported only when this executor is used (`pip install
"mnistres[dask]"`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from mnistres.api import Executor, PointTask
from mnistres.sweep.driver import STOP_WAIT_S, new_attempt
from mnistres.errors import ConfigError

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 10  # an unreachable scheduler is reported after this long
POLL_S = 0.5


def import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError('--executor dask needs Dask: pip install "mnistres[dask]"') from None
    return distributed


class DaskExecutor(Executor):
    """Every point a Dask task (`run_point_task`), all submitted at once. A point shows as running once its
    run directory says so, with the machine it runs on; `stop` sets the sweep's stop Event, which each
    running task passes on to its point, and waits for them. On a scheduler the user started, a CUDA point
    asks for the worker resource GPU=1; the embedded cluster's workers declare none, and its `jobs`
    already bounds the points."""

    place = "a Dask worker"
    gone_hint = "start a scheduler and run the same sweep again to go on"

    def __init__(self, *, jobs: int, devices: Sequence[str] = (), scheduler: str = "", scheduler_file: str = "") -> None:
        if scheduler and scheduler_file:
            raise ConfigError("give --scheduler or --scheduler-file, not both")
        if devices:
            raise ConfigError("--devices assigns devices to local child processes; with --executor dask start one "
                              "Dask worker per GPU (--resources GPU=1) and give --device cuda")
        self.jobs, self.scheduler, self.scheduler_file = jobs, scheduler or None, scheduler_file or None
        self.capacity = 1 << 30  # all at once: Dask queues them
        self.client: Any = None
        self.cluster: Any = None
        self.stop_event: Any = None
        self.tasks: list[Any] = []
        self._quiet: Any = None

    def open(self) -> None:
        self.client, self.cluster = connect(self.jobs, self.scheduler, self.scheduler_file)
        self._quiet = quiet_logs()
        self._quiet.__enter__()
        from distributed import Event

        self.stop_event = Event(f"mnistres-stop-{new_attempt()}", client=self.client)

    def start(self, task: PointTask) -> Any:
        point_file = task.point_file(absolute=True)
        gpu = self.cluster is None and task.device.startswith("cuda")
        future = self.client.submit(run_point_task, str(point_file.resolve()), task.attempt, task.plugins,
                                    str(task.log.resolve()), self.stop_event.name, task.threads,
                                    key=f"mnistres-{task.name}-{task.attempt}", pure=False,
                                    resources={"GPU": 1} if gpu else None)
        self.tasks.append(future)
        return future

    def done(self, handle: Any) -> bool:
        return handle.done()

    def finished(self, handle: Any) -> str:
        """Why Dask gave up on the task (a worker that died too often: `KilledWorker`), if it did; a point
        stopped with its dying worker records itself as interrupted, so its run directory would not say."""
        from mnistres.core.values import clip

        error = handle.exception() if handle.done() and handle.status == "error" else None
        return "" if error is None else f"Dask gave up on it: {type(error).__name__}: {clip(str(error), 200)}"

    def stop(self) -> None:
        from distributed import wait

        if self.stop_event is None:
            return
        self.stop_event.set()
        wait([task for task in self.tasks if not task.done()], timeout=STOP_WAIT_S + 30)

    def lost(self) -> str:
        if self.client is None or not lost(self.client, [task for task in self.tasks if not task.done()]):
            return ""
        address = getattr(getattr(self.client, "scheduler", None), "address", None) or "the scheduler"
        return f"the Dask scheduler ({address})"

    def close(self) -> None:
        """Close the client and the embedded cluster; one whose scheduler is gone closes without a word."""
        try:
            with quiet_logs():
                for closing in (self.client, self.cluster):
                    if closing is None:
                        continue
                    try:
                        closing.close(timeout=10) if closing is self.client else closing.close()
                    except Exception:  # noqa: BLE001 - nothing is left to close on a scheduler that went away
                        pass
        finally:
            if self._quiet is not None:
                self._quiet.__exit__(None, None, None)
                self._quiet = None


def connect(jobs: int, scheduler: Optional[str], scheduler_file: Optional[str]) -> tuple[Any, Any]:
    """(client, cluster): a client of the scheduler given (--scheduler, --scheduler-file, else
    $DASK_SCHEDULER_ADDRESS), or of a new LocalCluster of `jobs` single-threaded worker processes
    (cluster is then that cluster, to close; else None)."""
    distributed = import_distributed()
    address = scheduler or (None if scheduler_file else os.environ.get(SCHEDULER_ENV) or None)
    if scheduler_file is not None and not Path(scheduler_file).is_file():
        raise ConfigError(f"--scheduler-file {scheduler_file}: no such file (the scheduler writes it when it starts: "
                          f"dask scheduler --scheduler-file {scheduler_file})")
    if scheduler_file is not None:
        address = scheduler_address(Path(scheduler_file))
    if address is None and scheduler_file is None:
        cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        client = distributed.Client(cluster)
        client.wait_for_workers(jobs)  # else the first points all queue on the first worker up
        return client, cluster
    where = f"the Dask scheduler in {scheduler_file} ({address})" if scheduler_file else f"the Dask scheduler at {address}"
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, AssertionError) as error:
        raise ConfigError(f"cannot reach {where} within {CONNECT_TIMEOUT_S} s: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    return client, None


def lost(client: Any, tasks: Any) -> bool:
    """Whether the sweep lost its scheduler: the client reconnecting or closed, or a task cancelled (the
    sweep never cancels one itself: Dask cancels them all once the scheduler is gone)."""
    return client.status not in ("running", "newly-created") or any(task.status == "cancelled" for task in tasks)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Dask's own loggers at CRITICAL while a sweep runs on it: a lost scheduler is one line from the
    sweep, not pages of CommClosedError tracebacks from the client's reconnecting."""
    import logging

    names = ["distributed", *(name for name in list(logging.root.manager.loggerDict) if name.startswith("distributed."))]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def scheduler_address(path: Path) -> str:
    """The address in a scheduler file (`dask scheduler --scheduler-file PATH` writes JSON with it)."""
    import json

    try:
        text = path.read_text(encoding="utf-8")[:1 << 20]
        found = json.loads(text).get("address") if text.strip().startswith("{") else None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        found = None
    if not isinstance(found, str) or "://" not in found:
        raise ConfigError(f"--scheduler-file {path} is not a Dask scheduler file (JSON with the scheduler's "
                          f"\"address\", as `dask scheduler --scheduler-file {path}` writes it)")
    return found


def run_point_task(point_file: str, attempt: str, plugins: Sequence[str], log_file: str, stop_name: str,
                   threads: int = 0) -> dict:
    """One sweep point on a Dask worker: `python -m mnistres.worker` as this worker's child, stopped
    (SIGINT, so it records itself as interrupted) once the sweep sets the Event `stop_name`. `threads`
    is the sweep's own thread count (Dask's workers set OMP_NUM_THREADS=1, which would make a point
    compute with one thread where the sweep's own points use all the cores)."""
    from distributed import Event

    from mnistres.sweep import worker

    stop = Event(stop_name)
    host = socket.gethostname()
    if stop.is_set():
        return {"host": host, "started": False}
    from mnistres.core import atomic

    with atomic.open_log(log_file, append=True) as log:
        process = worker.child(Path(point_file), attempt, plugins, log, threads)
    try:
        while process.poll() is None:
            try:
                stopping = stop.wait(timeout=POLL_S)
            except Exception:  # noqa: BLE001 - the scheduler is gone: nobody can stop or read this point now,
                stopping = True  # so it stops, recording itself as interrupted (resumable), not killed
            if stopping:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    pass
                break
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return {"host": host, "started": True, "returncode": process.returncode}
