"""Small helpers for sentences that count things: "1 epoch", "3 epochs", "an interrupted run"."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """`plural(1, "epoch")` -> "1 epoch"; `plural(3, "epoch")` -> "3 epochs"; numbers with separators."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def article(word: str) -> str:
    """"a completed" / "an interrupted": the article for `word`, and the word ("" stays "")."""
    if not word:
        return "a"
    return ("an " if word[0].lower() in "aeiou" else "a ") + word
