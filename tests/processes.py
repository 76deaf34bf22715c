"""Helpers for tests that start sweeps as processes and watch them from outside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start_sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    def restore_sigint() -> None:  # background jobs start with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "mnistres", "sweep", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=restore_sigint,
                            env={**os.environ, "MNISTRES_DEBUG": ""})


def wait_for(predicate, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended early:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.05)


def status(run: Path) -> str:
    """A run's status as its summary.json says now ("" before there is one; "running" while it runs)."""
    try:
        return json.loads((run / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return ""


def processes_mentioning(text: str) -> list[int]:
    """Pids of running processes whose command line contains `text` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
