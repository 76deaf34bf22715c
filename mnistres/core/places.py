"""Where mnistres keeps its per-user files (the datasets it downloads, the names shell completion offers).

A leaf: no torch, nothing from mnistres, so that `data` and `registry` both ask it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_cache() -> Path:
    """The per-user cache: $XDG_CACHE_HOME/mnistres, ~/Library/Caches/mnistres, %LOCALAPPDATA%\\mnistres."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mnistres"
