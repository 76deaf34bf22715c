"""Stopping on request: SIGTERM (what `kill`, `timeout` and job schedulers send) is handled like
Ctrl-C, so a run or a sweep stopped either way saves its state, marks itself interrupted and
can be resumed, and a sweep stops its child processes instead of leaving them running; a child
whose sweep dies without a word (SIGKILL, a crash) stops itself (`tie_to_parent`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what the user can do next (shown by the CLI)."""

    def __init__(self, hint: str = "") -> None:
        super().__init__(hint)
        self.hint = hint


class OutputClosed(KeyboardInterrupt):
    """What we print has no reader any more (`mnistres sweep ... | head`, or `| less` quit early).

    Unix tools stop when that happens, and so do we, but as an interruption, not a failure: a run or a
    sweep saves its state, marks itself interrupted and can be resumed (`display.console` raises it)."""


WHY_OUTPUT_CLOSED = "its output was closed (the program reading it ended)"


def output_closed(stream: Any) -> None:
    """`stream`'s reader went away: from now on what is written to it goes nowhere (so neither later
    writes nor the flush at exit fail), and the work stops as if interrupted. Inside a run
    (`output_as_flag`, `signals_as_flag`) only its flag is raised, for the run to stop at the end of the
    epoch (every process together, under torchrun); elsewhere OutputClosed is raised here."""
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture): nothing to redirect
        descriptor = None
    if descriptor is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)
    if _flags:
        _flags[-1].raised = _flags[-1].output_closed = True
        return
    raise OutputClosed(WHY_OUTPUT_CLOSED)


def stop(flag: "Flag") -> KeyboardInterrupt:
    """What a raised flag stops the work with: OutputClosed when the output closed, else a plain interrupt."""
    return OutputClosed(WHY_OUTPUT_CLOSED) if flag.output_closed else KeyboardInterrupt()


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


class Flag:
    """Set when a signal came, or the output closed (see `signals_as_flag`, `output_as_flag`)."""

    raised = False
    output_closed = False  # raised because the output closed (see `output_closed`)


_flags: list[Flag] = []  # the flags of the `signals_as_flag` and `output_as_flag` blocks now open, innermost last


@contextmanager
def signals_as_flag() -> Iterator[Flag]:
    """Within the block, Ctrl-C and SIGTERM only raise a flag, to be read at points where all the processes
    of a run look at it together and stop as one (a process interrupted on its own would leave the others
    waiting for it). torchrun passes a Ctrl-C on to every process; each signal keeps the flag raised.

    Outside the main thread signals cannot be caught, and the flag stays down.
    """
    flag = Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def note(signum: int, frame: Any) -> None:
        flag.raised = True

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    _flags.append(flag)
    try:
        yield flag
    finally:
        _flags.remove(flag)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def output_as_flag(flag: Flag) -> Iterator[Flag]:
    """Within the block, output that loses its reader only raises `flag` (see `output_closed`): a run reads
    it at the end of the epoch, once the epoch is saved, instead of losing the epoch it was printing."""
    _flags.append(flag)
    try:
        yield flag
    finally:
        _flags.remove(flag)


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
    child nobody knows to stop; and for writing how a run ended.

    Blocking the signals in this thread is not enough: the kernel hands a signal sent to the process
    to any thread that does not block it (torch starts several), and Python then runs the handler in
    the main thread all the same. So the handlers themselves are replaced for the block, by one that
    notes the signal, and a noted signal is raised again once the old handlers are back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    blockable = hasattr(signal, "pthread_sigmask")
    # Blocked as well, so that a child started in the block inherits them blocked until it is ready.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if blockable else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a signal held back here reaches `note` now
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if noted:
            signal.raise_signal(noted[0])


PARENT_ENV = "MNISTRES_PARENT_PID"  # set by a sweep for its children: the pid they must not outlive
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_S = 1.0  # how often a child without PR_SET_PDEATHSIG looks for its parent


def as_started_process() -> None:
    """What every entry point of a process does first: receive Ctrl-C and SIGTERM even if the parent had
    them blocked when it started this process (a sweep blocks them for the instant in which it starts
    a point, and the mask is inherited), and, if a sweep started it, not outlive that sweep."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    tie_to_parent()


def tie_to_parent() -> None:
    """If this process was started by a sweep (PARENT_ENV), receive SIGTERM when that sweep dies,
    however it dies, and so end like an interrupted run (state saved, resumable) instead of training
    on as an orphan nobody will stop.

    On Linux the kernel sends the signal (PR_SET_PDEATHSIG); elsewhere a daemon thread checks every
    WATCH_S seconds whether the parent is still ours. A parent that died before the tie was made is
    caught by comparing the parent pid just after making it.
    """
    wanted = os.environ.pop(PARENT_ENV, "")  # for this process only, not for any it starts
    if not wanted.isdigit() or not hasattr(os, "getppid"):
        return
    parent = int(wanted)
    if not _kernel_tie():
        threading.Thread(target=_watch, args=(parent,), name="mnistres-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # already gone (or the variable was left set): nothing to run for
        sys.stderr.write(f"Error: {PARENT_ENV}={parent} names a process that is not this one's parent: the "
                         f"sweep that started it has ended, or the variable was left set; unset it to run "
                         f"mnistres yourself\n")
        sys.stderr.flush()
        raise SystemExit(2)


def _kernel_tie() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc to be found (a static or unusual Python): use the thread
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_S)
    os.kill(os.getpid(), signal.SIGTERM)
