"""The CPU cores a run may use, and how many of them other processes keep busy.

Why a run follows the free cores (`threads: 0`): torch's CPU threads work in lock-step — every
operation is split among them and waits for the slowest. When another process holds one of the cores,
the thread sharing that core with it is set aside for milliseconds at a time while the others wait, and
the run collapses: on 2 cores beside one busy process, a 2-thread run kept about a quarter of its quiet
speed, where 1 thread kept all of its own (docs/benchmarks/loaded.md). Waiting passively
(OMP_WAIT_POLICY=PASSIVE) avoids the collapse but made every quiet run 40 % slower.

Other processes' use is what the kernel counts as busy time on this process's cores (/proc/stat) less
this process's own CPU time, over a window of at least `MIN_WINDOW`. Where /proc/stat is missing
(macOS, Windows) nothing is measured and a run uses all its cores, as torch would.

A leaf: no torch, nothing from mnistres.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple, Optional

OTHERS_ENV = "MNISTRES_CPU_OTHERS"  # cores other processes keep busy, as a number: stands in for the measurement
MIN_WINDOW = 0.2  # seconds: the kernel counts CPU time in ticks of 10 ms; shorter looks are mostly rounding
RECENT = 1.0  # seconds: a choice made as a run goes looks at the last one to two of these
PROC_STAT = Path("/proc/stat")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity; every CPU where the system cannot say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def quota_cores(root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")) -> Optional[int]:
    """The cores' worth of CPU time this process's control group allows (a container's `--cpus`), rounded
    up; None without a limit. Affinity does not show such a limit, and torch does not look at it: a
    container given 2 CPUs of a 64-core host would otherwise run 64 threads on 2 cores' time."""
    try:
        groups = membership.read_text().splitlines()
    except OSError:
        return None
    found: list[float] = []
    for line in groups:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.strip().lstrip("/")
        if controllers == "":  # cgroup v2: "0::/path", the limit in cpu.max as "QUOTA PERIOD" or "max PERIOD"
            for folder in _upwards(root / relative, root):
                quota = _numbers(folder / "cpu.max")
                if quota:
                    found.append(quota)
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us
            mount = next((root / name for name in (controllers, "cpu", "cpu,cpuacct") if (root / name).is_dir()), None)
            for folder in _upwards(mount / relative, mount) if mount else ():
                quota = _numbers(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
                if quota:
                    found.append(quota)
    return max(1, math.ceil(min(found) - 1e-9)) if found else None


def _upwards(folder: Path, root: Path) -> list[Path]:
    """`folder` and its parents up to `root`: a limit set on any of them holds for the processes below."""
    chain = [folder]
    while chain[-1] != root and root in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _numbers(quota_file: Path, period_file: Optional[Path] = None) -> Optional[float]:
    """Quota over period in cores, from cgroup v2's cpu.max or v1's two files; None for no limit."""
    try:
        words = quota_file.read_text().split()
        if period_file is not None:
            words.append(period_file.read_text().strip())
        quota, period = float(words[0]), float(words[1])
    except (OSError, ValueError, IndexError):  # "max", a missing file, a folder we may not read
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cores() -> int:
    """The cores this process may compute on: its affinity, capped by its control group's CPU quota."""
    cores = len(allowed_cpus())
    quota = quota_cores()
    return max(1, min(cores, quota) if quota else cores)


class Sample(NamedTuple):
    """One look: when, the busy CPU seconds of this process's CPUs so far, and this process's own."""

    at: float  # time.monotonic()
    busy: float  # seconds the kernel counted busy on the CPUs this process may use, all processes
    own: float  # seconds of CPU time of this process, all its threads


def sample(stat: Path = PROC_STAT) -> Optional[Sample]:
    """The counters now; None where the system does not keep /proc/stat."""
    wanted = {f"cpu{number}" for number in allowed_cpus()}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    try:
        with open(stat) as lines:
            for line in lines:
                fields = line.split()
                if fields and fields[0] in wanted:
                    counts = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
                    busy += sum(counts) - counts[3] - counts[4]
    except (OSError, ValueError, IndexError):
        return None
    times = os.times()
    return Sample(time.monotonic(), busy / tick, times.user + times.system)


def others_between(before: Sample, after: Sample) -> float:
    """Cores' worth of CPU time that other processes used between two looks."""
    wall = after.at - before.at
    if wall <= 0:
        return 0.0
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / wall)


def forced_others() -> Optional[float]:
    """The cores MNISTRES_CPU_OTHERS says other processes keep busy (tests set it; so may a user who knows
    better than a measurement), or None to measure."""
    text = os.environ.get(OTHERS_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None


def free_threads(cap: int, cores: int, others: float) -> int:
    """Threads for a run that may use up to `cap` threads on `cores` cores, `others` of them kept busy
    elsewhere: the cores left, rounded (a core counts as taken once others use more than half of it), at least 1."""
    return max(1, min(cap, math.floor(cores - others + 0.5)))


class Share:
    """The threads a run computes with, chosen again at each `choose()` from what other processes did in
    the recent past: since the last choice, or, where the run calls `look()` as it goes (each step), over
    the last one to two `RECENT` periods, so that load that began late in a long epoch is seen at its end.
    `cap`: the most it may use (its thread count on a quiet machine)."""

    def __init__(self, cap: int, cores: Optional[int] = None) -> None:
        self.cap = cap
        self.cores = cores or usable_cores()
        self.looks: deque[Optional[Sample]] = deque([sample()], maxlen=2)  # RECENT apart; a choice measures from [0]
        self.others: Optional[float] = None  # at the last choice; None: not measured

    def look(self) -> None:
        """Keep the window of the next choice recent (cheap: a clock read, and the counters once a RECENT)."""
        latest = self.looks[-1]
        if latest is not None and time.monotonic() - latest.at >= RECENT:
            self.looks.append(sample())

    def choose(self) -> int:
        """The threads to use from now on (a window shorter than MIN_WINDOW is waited out)."""
        forced = forced_others()
        if forced is not None:
            self.others = forced
            return free_threads(self.cap, self.cores, forced)
        since = self.looks[0]
        if since is None:  # nothing to measure with
            return self.cap
        time.sleep(max(0.0, MIN_WINDOW - (time.monotonic() - since.at)))
        now = sample()
        if now is None:
            return self.cap
        self.others = others_between(since, now)
        self.looks = deque([now], maxlen=2)
        return free_threads(self.cap, self.cores, self.others)
