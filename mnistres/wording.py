"""Small helpers for sentences that count things: "1 epoch", "3 epochs", "an interrupted run", "21m29s"."""

from __future__ import annotations


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
