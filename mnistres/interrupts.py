"""Stopping on request: SIGTERM (what `kill`, `timeout` and job schedulers send) is handled like
Ctrl-C, so a run or a sweep stopped either way saves its state, marks itself interrupted and
can be resumed, and a sweep stops its child processes instead of leaving them running.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what the user can do next (shown by the CLI)."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does.

    Outside the main thread signals cannot be caught, and the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def shielded() -> Iterator[None]:
    """Within the block, further Ctrl-C and SIGTERM are ignored: for the few seconds in which an
    interrupted sweep stops its children and records their state, a second signal must not leave
    orphans behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM wait (they are delivered when it ends): for starting a
    child process and recording it, so that an interrupt never lands between the two and leaves a
    child nobody knows to stop."""
    blockable = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if not blockable:  # pragma: no cover - Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
