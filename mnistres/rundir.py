"""The run directory: where a run (or a sweep) writes, whether it may, and who is writing it now.

One owner for the rules every writer follows:

- a place is checked before any data or model is loaded: the parent must be a folder this
  process can write in, and every new folder name must fit the filesystem (`check_place`);
- one writer at a time: `Lock` holds `<dir>/.lock` (host, pid, start, command) for the whole
  run. A second writer is refused, naming the holder; a lock left by a dead process on this host
  is taken over; one from another host is reported, never broken (that host may still be
  writing to a shared filesystem);
- after a crash, the temporary files of interrupted writes are removed by the next writer that
  holds the lock (`atomic.remove_leftovers`).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from mnistres.errors import ConfigError, MnistresError, WriteError

LOCK_FILE = ".lock"
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt")
DEFAULT_NAME_MAX = 255  # bytes per file name, where the filesystem does not say
TEMP_MARGIN = 30  # a temporary file adds a dot, 8 random characters and ".tmp" (and ".yaml") to a name

try:  # POSIX advisory locks: released by the kernel when the holder dies, however it dies
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class LockedError(ConfigError):
    """Another process is writing this run or sweep."""


# --- naming ---------------------------------------------------------------------------------


def default_name(dataset: str, activation: str, optimizer: str, lr: float, batch_size: int) -> str:
    """A run name from its main settings and the time, e.g. mnist-relu-adam-lr0.001-bs32-20261130-101500."""
    def clean(text: str) -> str:
        return "".join(c if c.isalnum() or c in ".-" else "_" for c in text)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return clean(f"{dataset}-{activation}-{optimizer}-lr{lr:g}-bs{batch_size}")[:150] + f"-{stamp}"


# --- the place ----------------------------------------------------------------------------------


def check_place(folder: Path, what: str = "run directory") -> None:
    """Can `folder` be created (or used) and written in? Checked before anything heavy runs.

    The nearest existing ancestor must be a folder this process can create files in (probed by
    creating and removing one), and each folder still to be made must have a name the
    filesystem accepts.
    """
    folder = Path(folder)
    existing = folder
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    if _exists(existing) and not existing.is_dir():
        where = f"{existing} is a file" if existing == folder else f"{existing} (on the way to it) is a file"
        raise WriteError(f"cannot use {what} {folder}: {where}, not a folder")
    limit = name_max(existing)
    for part in folder.relative_to(existing).parts if existing != folder else ():
        if len(os.fsencode(part)) + TEMP_MARGIN > limit:
            raise WriteError(f"cannot use {what} {folder}: the name {part[:40]}... is {len(os.fsencode(part))} bytes; "
                             f"this filesystem allows {limit} per name (with room for temporary files: "
                             f"{limit - TEMP_MARGIN})")
    try:
        handle, probe = tempfile.mkstemp(prefix=".mnistres-probe-", dir=existing)
    except OSError as error:
        raise WriteError(f"cannot write in {existing} (for {what} {folder}): {reason(error)}") from None
    os.close(handle)
    os.unlink(probe)


def _exists(path: Path) -> bool:
    """Path.exists(), but a name too long for the filesystem simply does not exist (yet)."""
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the filesystem will not say
        return DEFAULT_NAME_MAX


def reason(error: OSError) -> str:
    """An OSError's reason in words ("No space left on device"), without its errno number."""
    return error.strerror or str(error) or type(error).__name__


# --- who is writing ------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
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
    return True


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    since = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M", time.localtime(since)) if isinstance(since, (int, float)) else ""
    command = f" ({holder['command']})" if isinstance(holder.get("command"), str) else ""
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}{when}{command}"


class Lock:
    """`<directory>/.lock`, held by one writer for as long as it writes there."""

    def __init__(self, directory: Path, what: str = "run") -> None:
        self.directory, self.what = Path(directory), what
        self.path = self.directory / LOCK_FILE
        self._handle: Optional[int] = None

    # A writer checks early (before loading data) and takes the lock later (before writing).
    def check(self) -> None:
        """Refuse now if someone is writing there; takes nothing."""
        if not self.path.exists():
            return
        self.acquire()
        self.release()

    def acquire(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        for _ in range(10):  # a holder may remove the file between our open and our lock: try again
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked_by_kernel = self._lock(handle)
                if os.fstat(handle).st_ino != os.stat(self.path).st_ino:
                    raise FileNotFoundError  # the file we locked was removed: not the lock any more
            except FileNotFoundError:
                os.close(handle)
                continue
            except BaseException:
                os.close(handle)
                raise
            holder = _read_holder(self.path)
            held_elsewhere = holder.get("host") not in (None, host)
            alive_here = holder.get("host") == host and holder.get("pid") != pid and _alive(int(holder.get("pid") or 0))
            if held_elsewhere or (alive_here and not locked_by_kernel):
                os.close(handle)
                self._refuse(holder, other_host=held_elsewhere)
            record = {"host": host, "pid": pid, "started": time.time(),
                      "command": " ".join(["mnistres", *sys.argv[1:]])[:100]}
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


def stored_status(run_dir: Path) -> str:
    """The status a run directory's summary.json records ("" when there is none to read)."""
    from mnistres.results import read_summary

    try:
        return read_summary(run_dir / "summary.json")["status"]
    except MnistresError:
        return ""
