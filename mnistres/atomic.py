"""Write-then-rename, so a crash or Ctrl-C never leaves a torn file behind.

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
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from mnistres.errors import WriteError


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's own is owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


TEMP_TAG = ".tmp"  # every temporary name is .<target>.<random><TEMP_TAG>[suffix]


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
        raise WriteError(f"cannot write {target}: {error.strerror or error}") from None
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
        raise WriteError(f"cannot write {target}: {error.strerror or error}") from error
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with replacing(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    with replacing(path) as temp:
        temp.write_bytes(data)


def remove_leftovers(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that writes of `names` in `folder` left when their process was
    killed. Only the holder of the folder's lock may call this: another writer's temporary file
    would be in use."""
    removed = []
    for name in names:
        for leftover in Path(folder).glob(f".{glob.escape(name)}.*{TEMP_TAG}*"):
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
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
