"""Writing to disk: write-then-rename, so a crash or Ctrl-C never leaves a torn file behind, and
`check_place`, which asks before any heavy work whether a folder can be made and written.

The temporary file lives in the target's folder (a rename is only atomic within one
filesystem) and is removed if writing fails, so the previous version stays intact. A failure
to write (a full disk, a read-only folder) is a `WriteError` naming the file and the reason.
A process killed mid-write cannot remove its temporary file; the next writer of that folder
does (`remove_leftovers`), once it holds the folder's lock.
"""

from __future__ import annotations

import glob
import json
import math
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from mnistres.errors import WriteError, reason


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's own is owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


TEMP_TAG = ".tmp"  # every temporary name is .<target>.<random><TEMP_TAG>[suffix]
DEFAULT_NAME_MAX = 255  # bytes per file name, where the filesystem does not say
TEMP_MARGIN = 30  # a temporary file adds a dot, 8 random characters and ".tmp" (and ".yaml") to a name


@contextmanager
def replacing(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path (ending in `suffix` too, for writers that insist on one); on success it
    replaces `path`, on error it is deleted."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_TAG + suffix, dir=target.parent)
    except OSError as error:
        raise WriteError(f"cannot write {target}: {reason(error)}") from None
    os.close(handle)
    temp = Path(temp_name)
    try:
        os.chmod(temp, _MODE)
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, target)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise WriteError(f"cannot write {target}: {reason(error)}") from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with replacing(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    with replacing(path) as temp:
        temp.write_bytes(data)


# Opening without following a link (a `.lock` or a log replaced by a link to someone's file must not
# write into that file) and without waiting (a FIFO in a file's place would hang the open for ever).
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def open_own(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """Open a file that mnistres keeps inside a run or sweep directory (a lock, a log), with `flags`
    (os.O_*; never O_TRUNC: see `open_log`), as a descriptor. A link, a folder, a FIFO or a device
    in its place is refused with a `WriteError` naming the path and what is there, never followed,
    written through or waited on."""
    path = Path(path)
    try:
        handle = os.open(path, flags | _NO_FOLLOW, mode)
    except OSError as error:
        raise WriteError(f"cannot use {path}: {_not_a_file(path) or reason(error)}") from None
    kind = os.fstat(handle).st_mode
    if not stat.S_ISREG(kind):
        os.close(handle)
        raise WriteError(f"cannot use {path}: {_not_a_file(path) or 'it is not a regular file; remove it and try again'}")
    os.set_blocking(handle, True)
    return handle


def check_own(path: str | os.PathLike) -> None:
    """Refuse (`WriteError`) when something other than a regular file stands where mnistres will write
    `path` with `open_own`; nothing there is fine."""
    problem = _not_a_file(Path(path))
    if problem:
        raise WriteError(f"cannot use {path}: {problem}")


def _not_a_file(path: Path) -> str:
    """What stands at `path` instead of a regular file ("" if a regular file or nothing)."""
    try:
        kind = os.lstat(path).st_mode
    except OSError:
        return ""
    if stat.S_ISLNK(kind):
        return "it is a symbolic link (mnistres does not write through links); remove it and try again"
    if stat.S_ISDIR(kind):
        return "it is a folder, not a file; remove it and try again"
    if stat.S_ISFIFO(kind):
        return "it is a FIFO (named pipe), not a file; remove it and try again"
    if not stat.S_ISREG(kind):
        return "it is a device or socket, not a file; remove it and try again"
    return ""


def open_log(path: str | os.PathLike, *, append: bool, newline: str | None = None) -> Any:
    """A text file for a process's output inside a run or sweep directory (`open_own`'s rules): added to
    with `append`, else emptied (only once it is known to be a regular file)."""
    handle = open_own(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0))
    try:
        if not append:
            os.ftruncate(handle, 0)
        return os.fdopen(handle, "a" if append else "w", encoding="utf-8", newline=newline)
    except OSError as error:
        os.close(handle)
        raise WriteError(f"cannot write {path}: {reason(error)}") from None


def open_text(path: str | os.PathLike, mode: str) -> Any:
    """`open_own`'s rules for a text file (UTF-8, newline=""): "r" reads it, "w" empties it, "a" adds to it."""
    if mode == "r":
        return os.fdopen(open_own(path, os.O_RDONLY), "r", encoding="utf-8", newline="")
    if mode not in ("w", "a"):
        raise ValueError(f"mode {mode!r}: expected 'r', 'w' or 'a'")
    return open_log(path, append=mode == "a", newline="")


def read_own(path: str | os.PathLike, limit: int = 1 << 16) -> bytes:
    """Up to `limit` bytes of a small file mnistres keeps (a lock record) without following a link or
    waiting on a FIFO: b"" when there is no regular file to read."""
    try:
        handle = os.open(path, os.O_RDONLY | _NO_FOLLOW)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return b""
        return os.read(handle, limit)
    except OSError:
        return b""
    finally:
        os.close(handle)


def leftovers(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """The temporary files that writes of `names` in `folder` left when their process was killed."""
    return [leftover for name in names for leftover in Path(folder).glob(f".{glob.escape(name)}.*{TEMP_TAG}*")]


def remove_leftovers(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that writes of `names` in `folder` left when their process was
    killed. Only the holder of the folder's lock may call this: another writer's temporary file
    would be in use."""
    removed = leftovers(folder, names)
    for leftover in removed:
        leftover.unlink(missing_ok=True)
    return removed


def to_json(data: Any, indent: int | None = 2) -> str:
    """Strict JSON that any reader accepts: NaN and infinities (undefined ratios) become null."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, to_json(data) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# --- places ------------------------------------------------------------------------------------


DEFAULT_PATH_MAX = 4096  # bytes of a whole path (Linux), where the filesystem does not say


def check_place(folder: Path, what: str = "run directory", room: int = 64) -> None:
    """Can `folder` be created (or used) and written in? Checked before anything heavy runs.

    The nearest existing ancestor must be a folder this process can create files in (probed by
    creating and removing one), each folder still to be made must have a name the filesystem
    accepts, and the whole path, with `room` bytes for the names mnistres writes inside it (its
    files and their temporary names), must fit the system's limit on a path.
    """
    folder = Path(folder)
    whole, limit = len(os.fsencode(str(folder))) + 1 + room, path_max()
    if whole > limit:
        raise WriteError(f"cannot use {what} {str(folder)[:60]}...: its path is {whole - 1 - room:,} bytes; with "
                         f"the files inside it must stay under this system's {limit:,} (use a shorter --out-dir "
                         f"or --name)")
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


def path_max() -> int:
    try:
        return int(os.pathconf("/", "PC_PATH_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the filesystem will not say
        return DEFAULT_PATH_MAX


def name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the filesystem will not say
        return DEFAULT_NAME_MAX
