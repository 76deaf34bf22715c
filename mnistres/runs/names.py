"""Run and sweep names: the characters a name may hold (`name_problem`), the safe name made from any text
(`safe_name`), generated run names (`default_name`) and sweep points' names, shortened where long
(`point_name`). No torch."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

NAME_PUNCTUATION = "._+=,-"  # besides ASCII letters and digits
NAME_LIMIT = 200  # characters of a run name; folder names end at 255 bytes on most filesystems
POINT_NAME_LIMIT = 120  # characters; a point's folder, log and temporary files must fit any filesystem's 255 bytes
_NAME_OK = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9{re.escape(NAME_PUNCTUATION)}]*$")


# What a name may hold, in words (messages and the settings reference).
NAME_RULE = (f"up to {NAME_LIMIT} letters, digits and {' '.join(NAME_PUNCTUATION)} (no slashes or spaces, "
             f"not starting with a dot)")


def name_problem(name: str) -> str:
    """What makes `name` unusable as a run or sweep name ("" if nothing)."""
    if len(name) <= NAME_LIMIT and _NAME_OK.match(name):
        return ""
    return NAME_RULE


def safe_name(text: str) -> str:
    """`text` as a folder or file name that `name_problem` accepts (when any letter or digit is left):
    characters a name may not hold become '-', and it starts with a letter or digit."""
    kept = "".join(c if (c.isascii() and c.isalnum()) or c in NAME_PUNCTUATION else "-" for c in text)
    return kept.lstrip(NAME_PUNCTUATION)


def default_name(dataset: str, activation: str, optimizer: str, lr: float, batch_size: int) -> str:
    """A run name from its main settings and the time, e.g. mnist-relu-adam-lr0.001-bs32-20261130-101500."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return safe_name(f"{dataset}-{activation}-{optimizer}-lr{lr:g}-bs{batch_size}")[:150] + f"-{stamp}"


def point_name(text: str, taken: set[str]) -> str:
    """A sweep point's folder name from its values (`lr=0.01,seed=0`), unique among `taken`.

    A name longer than POINT_NAME_LIMIT keeps its start and its seed, with a digest of the whole in
    between (the full values are in the point's config.yaml and in sweep.yaml).
    """
    safe = safe_name(text)
    if len(safe) > POINT_NAME_LIMIT:
        head, comma, seed = safe.rpartition(",seed=")
        tail = f",seed={seed}" if comma else ""
        digest = hashlib.sha256(text.rpartition(",seed=")[0].encode() if comma else text.encode()).hexdigest()[:10]
        safe = f"{(head or safe)[: POINT_NAME_LIMIT - len(tail) - 12]}--{digest}{tail}"
    name, n = safe, 2
    while name in taken:
        name, n = f"{safe}-{n}", n + 1
    return name
