"""Small helpers for sentences: counts ("1 epoch", "3 epochs"), "an interrupted run", "21m29s", and the
"did you mean" hint every unknown name gets."""

from __future__ import annotations

import difflib
from typing import Iterable


def plural(count: int, word: str, many: str | None = None) -> str:
    """`plural(1, "epoch")` -> "1 epoch"; `plural(3, "epoch")` -> "3 epochs"; numbers with separators."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def article(word: str) -> str:
    """"a completed" / "an interrupted": the article for `word`, and the word ("" stays "")."""
    if not word:
        return "a"
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def duration(seconds: float) -> str:
    """Elapsed time as a sweep and `runs` show it: "42s", "21m29s", "2h05m" (whole seconds, cut off)."""
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """"; did you mean 'width'?" when one of `choices` is close to `word`, else "" (long words are not
    compared: difflib's cost grows with the square of their length)."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff) if len(word) <= 100 else []
    return f"; did you mean '{close[0]}'?" if close else ""
