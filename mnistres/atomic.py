"""Write-then-rename, so a crash or Ctrl-C never leaves a torn file behind.

The temporary file lives in the target's folder (a rename is only atomic within one
filesystem) and is removed if writing fails, so the previous version stays intact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's own is owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


@contextmanager
def replacing(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path (ending in `suffix`, for writers that insist on one); on success it
    replaces `path`, on error it is deleted."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    temp = Path(temp_name)
    os.chmod(temp, _MODE)
    try:
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with replacing(path) as temp:
        temp.write_text(text, encoding="utf-8")


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
