"""A sweep point, run by the library: the one entry every way of running a point goes through.

`run_point` trains (or resumes) one point and leaves its outcome in the point's run directory:
summary.json says how it ended and which attempt ended it. That is all the sweep reads back,
whether the point ran in the sweep's own process, in a child process on this machine
(`python -m mnistres.worker POINT.yaml --attempt ID`), or anywhere else that sees the same
folder. Whether to resume is decided here, from the run directory (`resume.resumable`), so
a point started again after any stop goes on from its last completed epoch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable, Optional

from mnistres.train import resume
from mnistres.runs import rundir
from mnistres.config import RunConfig
from mnistres.errors import MnistresError
from mnistres.resolve import Resolved


def run_point(point: RunConfig | Resolved, *, attempt: str, console: Any = None,
              extra_callbacks: Iterable[Any] = ()) -> tuple[str, str]:
    """Train the point `point` describes (OUT_DIR/NAME is its run directory) and return its outcome,
    (status, message), as recorded in its summary.json under `attempt`.

    A failure before the run could record anything itself (data, device or a plugin that does not
    load) is recorded here, so that it too is read back from the run directory. Ctrl-C and SIGTERM
    propagate (as `Interrupted`), after the run recorded itself as interrupted.
    """
    from mnistres.train.loop import train

    config = point.config if isinstance(point, Resolved) else point
    run_dir = Path(config.out_dir) / str(config.name)
    going_on = resume.resumable(run_dir, config.to_dict())
    if going_on and console is not None:
        latest = rundir.latest_epoch(run_dir) or {"epoch": 0}
        console.print(f"Resuming {run_dir} after epoch {latest['epoch']} (it stopped as "
                      f"{rundir.stored_status(run_dir) or 'unknown'})", markup=False, highlight=False, soft_wrap=True)
    try:
        train(point, console=console, overwrite=not going_on, resume=going_on, attempt=attempt,
              extra_callbacks=extra_callbacks)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # a user-level problem or a bug: either way this point's outcome
        message = str(error) if isinstance(error, MnistresError) else f"{type(error).__name__}: {error}"
        if console is not None:
            console.print(f"Error: {message}" if isinstance(error, MnistresError) else traceback.format_exc(),
                          markup=False, highlight=False, soft_wrap=True, lines=not isinstance(error, MnistresError))
        if rundir.outcome(run_dir, attempt) is None:
            _record_failure(run_dir, message, attempt)
        return rundir.outcome(run_dir, attempt) or ("failed", message)
    return rundir.outcome(run_dir, attempt) or ("failed", "the run ended without recording how")


def _record_failure(run_dir: Path, message: str, attempt: str) -> None:
    """Write the failure into summary.json, if this process may write the run directory now."""
    from mnistres.core.lock import Lock, LockedError

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with Lock(run_dir):
            rundir.record_failure(run_dir, message, attempt)
    except (LockedError, OSError, MnistresError):
        pass  # another writer holds it, or it cannot be written: the caller says so from what it has


def child(point_file: Path, attempt: str, plugins: Iterable[str], log: Any, threads: int = 0) -> subprocess.Popen:
    """Start `python -m mnistres.worker` for a point, as a child of this process (a sweep, or a Dask
    worker), its output going to `log`, in a session of its own (so a Ctrl-C reaches it only when
    passed on), and tied to this process (PARENT_ENV): it stops itself, as interrupted, if this
    process dies without stopping it. `threads` (0: the child's own default) is what the point's
    `threads: 0` stands for, resolved by the sweep in its own process."""
    from mnistres.core.interrupts import PARENT_ENV

    # -P: the child does not put the current folder first on sys.path, so a csv.py or yaml.py lying
    # there is never imported (mnistres/__init__.py does the same for Pythons before 3.11).
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    command = [sys.executable, *safe_path, "-m", "mnistres.worker", str(point_file), "--attempt", attempt,
               *[arg for plugin in plugins for arg in ("--plugin", plugin)],
               *(["--threads", str(threads)] if threads else [])]
    env = {**os.environ, "COLUMNS": "120", PARENT_ENV: str(os.getpid())}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m mnistres.worker POINT.yaml --attempt ID`: run one sweep point; the outcome is in its
    run directory. The exit code says only whether that outcome could be recorded (0) or not (2)."""
    from mnistres import config as config_module, registry
    from mnistres.core.display import console as make_console
    from mnistres.core.interrupts import as_started_process

    as_started_process()
    parser = argparse.ArgumentParser(prog="python -m mnistres.worker", description=main.__doc__)
    parser.add_argument("point_file", type=Path, help="the point's RunConfig as YAML (written by the sweep)")
    parser.add_argument("--attempt", required=True, help="recorded in summary.json with the outcome")
    parser.add_argument("--plugin", action="append", default=[], help="a plugin to load (repeatable)")
    parser.add_argument("--threads", type=int, default=0,
                        help="the CPU threads `threads: 0` stands for (the sweep's own count); 0: this process's default")
    arguments = parser.parse_args(argv)
    console = make_console(wide=True)
    registry.request(arguments.plugin)
    try:
        if arguments.threads:
            from mnistres.train import devices

            devices.use_default_threads(arguments.threads)
        point = config_module.build(arguments.point_file)
    except MnistresError as error:
        console.print(f"Error: {error}", markup=False, highlight=False, soft_wrap=True)
        return 2
    try:
        status, message = run_point(point, attempt=arguments.attempt, console=console)
    except KeyboardInterrupt as interrupt:
        console.print(f"Interrupted: {getattr(interrupt, 'hint', '') or 'stopped'}.", markup=False, soft_wrap=True)
        return 130
    recorded = rundir.outcome(Path(point.out_dir) / str(point.name), arguments.attempt) is not None
    if not recorded:
        console.print(f"Error: {message} (not recorded in the run directory)", markup=False, soft_wrap=True)
    return 0 if recorded else 2


if __name__ == "__main__":
    sys.exit(main())
