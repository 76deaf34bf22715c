"""One writer per folder: `Lock` holds `<folder>/.lock` for as long as a run or sweep writes there.

The lock file records the holder's host, pid, start time and command. A second writer is
refused, naming the holder; a lock left by a dead process on this host is taken over; one from
another host is reported, never broken (that host may still be writing to a shared filesystem).
On POSIX the kernel's advisory lock (flock) backs the record, so a holder that dies however it
dies releases it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from mnistres.core import atomic
from mnistres.errors import ConfigError, WriteError

LOCK_FILE = ".lock"

try:  # POSIX advisory locks: released by the kernel when the holder dies, however it dies
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class LockedError(ConfigError):
    """Another process is writing this run or sweep."""


def alive(pid: int) -> bool:
    """Whether process `pid` on this host is running (a zombie, dead but not yet reaped, is not)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - no cheap check: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    try:  # Linux: a killed process stays a zombie until its parent reaps it
        state = open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _read_holder(path: Path) -> dict[str, Any]:
    try:  # never through a link, never waiting on a FIFO put in its place
        holder = json.loads(atomic.read_own(path).decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    since = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M", time.localtime(since)) if isinstance(since, (int, float)) else ""
    command = f" ({holder['command']})" if isinstance(holder.get("command"), str) else ""
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}{when}{command}"


def holder_of(directory: Path) -> str:
    """Who holds (or last held) `directory`'s lock, in words."""
    return describe_holder(_read_holder(Path(directory) / LOCK_FILE))


def holder_state(directory: Path) -> str:
    """Who holds `directory`'s lock, without taking it: "none" (no lock file, or its holder on this host
    is gone), "alive" (a live process on this host) or "elsewhere" (another host: cannot be checked)."""
    path = Path(directory) / LOCK_FILE
    if not os.path.lexists(path):
        return "none"
    holder = _read_holder(path)
    if holder.get("host") not in (None, socket.gethostname()):
        return "elsewhere"
    pid = holder.get("pid")
    return "alive" if isinstance(pid, int) and alive(pid) else "none"


def command_line() -> str:
    """What started this process, as the lock records it: `mnistres train ...`, or for a sweep's point
    `python -m mnistres.worker POINT.yaml ...` (not a command a user types: it must not read like one)."""
    program = "python -m mnistres.worker" if Path(sys.argv[0]).stem == "worker" else "mnistres"
    return " ".join([program, *sys.argv[1:]])[:100]


class Lock:
    """`<directory>/.lock`, held by one writer for as long as it writes there."""

    def __init__(self, directory: Path, what: str = "run") -> None:
        self.directory, self.what = Path(directory), what
        self.path = self.directory / LOCK_FILE
        self._handle: Optional[int] = None

    # A writer checks early (before loading data) and takes the lock later (before writing).
    def check(self) -> None:
        """Refuse now if someone is writing there (or the lock file is not one); takes nothing."""
        if not os.path.lexists(self.path):
            return
        self.acquire()
        self.release()

    def acquire(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        for _ in range(10):  # a holder may remove the file between our open and our lock: try again
            try:  # a link, folder or FIFO in the lock's place is refused, never followed or waited on
                handle = atomic.open_own(self.path, os.O_RDWR | os.O_CREAT)
            except WriteError as error:
                raise LockedError(f"{self.directory} cannot be locked: {str(error).removeprefix('cannot use ')}") \
                    from None
            try:
                locked_by_kernel = self._lock(handle)
                if os.fstat(handle).st_ino != os.lstat(self.path).st_ino:
                    raise FileNotFoundError  # the file we locked was removed: not the lock any more
            except FileNotFoundError:
                os.close(handle)
                continue
            except BaseException:
                os.close(handle)
                raise
            holder = _read_holder(self.path)
            held_elsewhere = holder.get("host") not in (None, host)
            alive_here = holder.get("host") == host and holder.get("pid") != pid and alive(int(holder.get("pid") or 0))
            if held_elsewhere or (alive_here and not locked_by_kernel):
                os.close(handle)
                self._refuse(holder, other_host=held_elsewhere)
            record = {"host": host, "pid": pid, "started": time.time(),
                      "command": command_line()}
            os.ftruncate(handle, 0)
            os.pwrite(handle, json.dumps(record).encode(), 0)
            self._handle = handle
            return
        raise LockedError(f"{self.directory} is being locked and unlocked by other processes; try again")

    def _lock(self, handle: int) -> bool:
        """Take the kernel's lock on the open file; True if the kernel keeps it for us."""
        if fcntl is None:  # pragma: no cover
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self.path)
            self._refuse(holder, other_host=False)
        except OSError as error:
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a filesystem without locks
                return False
            raise
        return True

    def _refuse(self, holder: dict[str, Any], *, other_host: bool) -> None:
        who = describe_holder(holder) if holder else "another process"
        if other_host:
            raise LockedError(f"{self.directory} is locked by {who}, another machine; if that {self.what} is no "
                              f"longer running, delete {self.path} and try again")
        raise LockedError(f"{self.directory} is being written by {who}; wait for that {self.what} to end, "
                          f"or choose another --name")

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: nobody can take a stale copy
        finally:
            os.close(self._handle)
            self._handle = None

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
