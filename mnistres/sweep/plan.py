"""Sweeps: many runs whose configs differ in a few keys, one run directory per point.

A sweep directory holds `sweep.yaml` (the axes, the seeds, the shared settings and the
list of points), one run directory per point and `logs/<point>.log`. Running the same
sweep again keeps the points whose run finished (completed or diverged: both are results),
resumes interrupted ones from their last completed epoch, and redoes the rest. Points run through an
executor (`registry.executors`: in this process, `jobs` at a time as child processes, as Dask tasks, or
a plugin's), driven alike by `driver`, each with the sweep's thread count (never a share that depends on
`jobs`: threads change a CPU run's numbers) or its own device. The directory's layout and the rules for
keeping points are `rundir`'s, for resuming them `resume`'s.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from mnistres import config as config_module
from mnistres.core import atomic
from mnistres.sweep import driver
from mnistres.runs import about, names, rundir
from mnistres.config import RunConfig
from mnistres.errors import ConfigError, WriteError, reason
from mnistres.core.interrupts import Interrupted, OutputClosed, shielded, sigterm_as_interrupt
from mnistres.core.lock import Lock
from mnistres.resolve import Resolved, canonical, meaning, resolve
from mnistres.core.values import clip, echo, text
from mnistres.sweep.view import PointState

SWEEP_KEYS = ("axes", "seeds")  # keys of a sweep YAML file that are not RunConfig keys
NOT_AXES = ("name", "out_dir")  # where runs go is decided by the sweep
MAX_SEEDS, MAX_JOBS = 1000, 1024  # beyond these a sweep is a mistake, not a study
MAX_POINTS = rundir.MAX_POINTS  # sweep.yaml is read back with limits sized to it


@dataclass(frozen=True)
class Point:
    name: str  # run directory name inside the sweep directory
    values: dict[str, Any]  # the axis values of this point
    seed: int
    resolved: Resolved  # its config, every name resolved once, while planning

    @property
    def config(self) -> RunConfig:
        return self.resolved.config

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out_dir) / self.name


@dataclass(frozen=True)
class Plan:
    directory: Path
    base: RunConfig  # the settings every point shares
    axes: dict[str, list[Any]]
    seeds: list[int]
    points: list[Point]


# --- building the plan ---------------------------------------------------------------------


def load_file(path: str | Path) -> tuple[dict[str, Any], dict[str, list[Any]], Optional[int]]:
    """A sweep YAML: RunConfig keys, plus `axes:` (key -> list of values) and `seeds:` (a count)."""
    data = config_module.load_yaml(path)
    axes = data.pop("axes", None) or {}
    seeds = data.pop("seeds", None)
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        raise ConfigError(f"{path}: axes must map each key to a non-empty list of values, e.g. axes: {{lr: [0.1, 0.01]}}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS):
        raise ConfigError(f"{path}: seeds must be a whole number from 1 to {MAX_SEEDS}, got {echo(seeds)}")
    return data, {str(k): list(v) for k, v in axes.items()}, seeds


def parse_grid(text: str) -> tuple[str, list[str]]:
    """`--grid batch_size=32,128` -> ("batch_size", ["32", "128"]). Registry specs keep their
    own options: `optimizer=adam,sgd:momentum=0.9,nesterov=true` is two values."""
    key, sep, rest = text.partition("=")
    if not sep or not key.strip() or not rest.strip():
        raise ConfigError(f"--grid expects KEY=V1,V2,..., got {text!r}")
    return key.strip(), config_module.split_specs(rest)


def make_plan(base: RunConfig, axes: Mapping[str, Sequence[Any]], seeds: int = 1) -> Plan:
    """Check every axis and every point's config (names included) before anything runs."""
    typed: dict[str, list[Any]] = {}
    for raw_key, raw_values in axes.items():
        key = config_module.check_key(raw_key, "sweep axes")
        if key in NOT_AXES:
            raise ConfigError(f"'{key}' cannot be swept: the sweep decides where its runs go (use --name for the sweep)")
        if key in typed:
            raise ConfigError(f"axis '{key}' is given twice")
        coerced = [canonical(key, config_module.coerce(key, value)) for value in raw_values]
        if not coerced:
            raise ConfigError(f"axis '{key}' has no values")
        # Values that mean the same run (relu and RELU, sgd and sgd:momentum=0.0) are one value.
        meanings = [meaning(key, value) for value in coerced]
        repeated = sorted({text(v) for v, m in zip(coerced, meanings) if meanings.count(m) > 1})
        if repeated:
            raise ConfigError(f"axis '{key}' lists the same setting more than once ({', '.join(repeated)})")
        typed[key] = coerced
    if not typed:
        raise ConfigError("a sweep needs at least one axis: mnistres sweep PARAM VALUE... (or axes: in --config)")
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds {seeds}: expected 1 to {MAX_SEEDS}")
    count = math.prod(len(v) for v in typed.values()) * (seeds if "seed" not in typed else 1)
    if count > MAX_POINTS:
        raise ConfigError(f"this sweep has {count:,} points; at most {MAX_POINTS:,} run in one sweep")
    if "seed" in typed and seeds > 1:
        raise ConfigError("seed is an axis of this sweep; --seeds cannot add more seeds on top")
    seed_list = [base.seed + i for i in range(seeds)] if "seed" not in typed else []

    directory = Path(base.out_dir) / (base.name or "-".join(typed) + "-sweep")
    points: list[Point] = []
    taken: set[str] = set()
    for combination in itertools.product(*typed.values()):
        values = dict(zip(typed, combination))
        for seed in seed_list or [values["seed"]]:
            parts = [f"{key}={text(value)}" for key, value in values.items()]
            if "seed" not in typed:
                parts.append(f"seed={seed}")
            name = names.point_name(",".join(parts), taken)
            taken.add(name)
            try:
                point_config = base.replace(**{**values, "seed": seed}, name=name, out_dir=str(directory))
            except ConfigError as error:
                if error.key in values:  # the swept value itself is wrong: the message names it
                    raise
                # It clashes with another setting (`val_split 0.3` with a preset's train_size): say where.
                raise ConfigError(f"point {name}: {error}", key=error.key) from None
            points.append(Point(name, values, seed, resolve(point_config)))
    return Plan(directory, base, typed, seed_list or typed["seed"], points)


def plan_from(config_file: str | Path | None, command_axes: Iterable[tuple[str, list[Any]]],
              options: Mapping[str, Any], sets: Iterable[str], seeds: Optional[int],
              callbacks: Iterable[str] = (), preset: Optional[str] = None) -> Plan:
    """The plan a command line describes: a preset, a sweep file's keys, axes and seeds, then the
    command's axes (PARAM VALUE..., --grid), options, --callback, --set pairs and --seeds, later winning."""
    file_data, file_axes, file_seeds = load_file(config_file) if config_file else ({}, {}, None)
    base = config_module.layered(file_data, str(config_file), options, sets, callbacks, preset)
    return make_plan(base, merge_axes(file_axes, command_axes), seeds if seeds is not None else (file_seeds or 1))


def plan_record(plan: Plan, states: Sequence[PointState] = ()) -> dict[str, Any]:
    """sweep.yaml: the plan, and each point's status and reason once known."""
    known = {state.point.name: state for state in states}
    points = []
    for point in plan.points:
        record: dict[str, Any] = {"name": point.name, "values": point.values, "seed": point.seed}
        state = known.get(point.name)
        if state is not None:
            record["status"] = state.status
            if state.message:  # whole in the point's summary.json
                record["message"] = clip(state.message, rundir.POINT_MESSAGE_LIMIT)
            host = rundir.stored_summary(point.run_dir).get("host") if state.status != "pending" else None
            if host:
                record["host"] = host  # where it ran (last), as its summary.json says
        points.append(record)
    return {"axes": plan.axes, "seeds": plan.seeds, "base": rundir.result_settings(plan.base.to_dict()), "points": points}


def check_directory(plan: Plan, overwrite: bool) -> None:
    """A sweep directory may be run again with the same shared settings; anything else is refused."""
    path = plan.directory / rundir.SWEEP_FILE
    if plan.directory.exists() and not plan.directory.is_dir():
        raise ConfigError(f"{plan.directory} exists and is not a folder")
    if overwrite or not path.is_file():
        if not path.is_file() and plan.directory.is_dir() and any(plan.directory.iterdir()) and not overwrite:
            raise ConfigError(f"{plan.directory} exists and is not a sweep directory; choose another --name")
        return
    old_base = rundir.read_sweep(plan.directory).get("base", {})
    new_base = rundir.result_settings(plan.base.to_dict())
    changed = [f"{k}: {text(old_base.get(k))} -> {text(new_base.get(k))}"
               for k in new_base if old_base.get(k) != new_base.get(k)]
    if changed:
        raise ConfigError(
            f"{plan.directory} holds a sweep with other shared settings ({'; '.join(changed)}); "
            f"use --name for a new sweep, or --overwrite to redo every point"
        )


def finished(point: Point) -> Optional[str]:
    """The status of an earlier run of this exact point, if it is a result worth keeping."""
    return rundir.kept_status(point.run_dir, point.config.to_dict())


# --- running -------------------------------------------------------------------------------


@dataclass
class Outcome:
    plan: Plan
    states: list[PointState] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(state.status == status for state in self.states)


def executor_spec(executor: str, scheduler: Optional[str] = None, scheduler_file: Optional[str] = None) -> Any:
    """The executor a sweep runs on, parsed (`--executor NAME[:key=value,...]`). --scheduler and
    --scheduler-file, the options before executors were a registry, are the dask executor's options."""
    from mnistres.registry import Spec, executors

    spec = executors.parse(executor)
    if scheduler or scheduler_file:
        if spec.name != "dask":
            raise ConfigError("--scheduler and --scheduler-file choose a Dask scheduler: add --executor dask")
        spec = Spec(spec.name, {**spec.options, **({"scheduler": scheduler} if scheduler else {}),
                                **({"scheduler_file": scheduler_file} if scheduler_file else {})})
    return spec


def run(plan: Plan, *, jobs: Optional[int] = None, devices: Sequence[str] = (), console: Any = None,
        overwrite: bool = False, executor: str = "local", scheduler: Optional[str] = None,
        scheduler_file: Optional[str] = None, tags: Iterable[str] = (), note: Optional[str] = None) -> Outcome:
    """Run every point that has no result yet; the sweep goes on past failed or diverged points.

    Ctrl-C or SIGTERM stops the running points (each marks itself interrupted) and raises
    `Interrupted`; finished points are untouched, and running the same sweep again picks up the
    rest. `jobs` (None: as many as the cores allow, see `choose_jobs`) never changes a point's
    numbers: every point computes with the sweep's own thread count.

    `executor` names a registered executor with its options (`registry.executors`): "local" runs points
    in this process or as child processes, "here" in this process, "dask:scheduler=ADDRESS" as Dask
    tasks (on a LocalCluster of `jobs` workers without a scheduler). `scheduler` and `scheduler_file`
    are the dask executor's options under their old names. Every executor's points are driven alike
    (`driver`), and each point's outcome is read from its run directory. `tags` and `note` go on the
    sweep (its about.yaml; its points show them too).
    """
    from mnistres.train import data as data_module, devices as devices_module
    from mnistres.core import display
    from mnistres.registry import executors

    console = console or display.console(wide=True)
    spec = executor_spec(executor, scheduler, scheduler_file)
    told = about.checked(tags, note)
    with sigterm_as_interrupt():
        # Missing data, an unavailable device or too many threads fail here, once, not in every point.
        for device in sorted(set(devices) or {point.config.device for point in plan.points}):
            devices_module.torch_device(device)
        devices_module.check_threads(plan.base.threads)
        # What `threads: 0` stands for, resolved here once and handed to every point's process: a Dask
        # worker (OMP_NUM_THREADS=1) would otherwise compute a point with fewer threads than the sweep's own.
        threads = plan.base.threads or devices_module.default_threads()
        jobs = choose_jobs(jobs, devices, plan.base.threads, plan.points[0].config.device)
        runner = executors.build(spec, jobs=jobs, devices=list(devices), threads=threads)
        # Room for a point's folder and its files, the longest names a sweep writes inside.
        atomic.check_place(plan.directory / rundir.LOGS, "sweep directory", room=names.POINT_NAME_LIMIT + 64)
        if plan.directory.exists() and not plan.directory.is_dir():
            raise ConfigError(f"{plan.directory} exists and is not a folder")
        lock = Lock(plan.directory, what="sweep")
        lock.check()
        check_directory(plan, overwrite)
        for dataset, data_dir, download in sorted({(p.config.dataset, p.config.data_dir, p.config.download)
                                                   for p in plan.points}, key=str):
            data_module.ensure_files(dataset, data_module.resolve_data_dir(data_dir), download)
        states = [PointState(point) for point in plan.points]
        for state in states:
            status = None if overwrite else finished(state.point)
            if status:
                state.status, state.kept = status, True
                driver.read_progress(state)
        pending = [state for state in states if state.status == "pending"]
        try:
            if pending:  # a missing extra or an unreachable scheduler: before anything is written
                runner.open()
            _run_locked(plan, states, pending, lock, console, runner, threads, told)
        finally:
            with shielded():
                runner.close()
    return Outcome(plan, states)


def _run_locked(plan: Plan, states: list[PointState], pending: list[PointState], lock: Lock, console: Any,
                runner: Any, threads: int, told: tuple[tuple[str, ...], Optional[str]] = ((), None)) -> None:
    """The points, run while this process holds the sweep directory; sweep.yaml written before and after."""
    from mnistres.sweep import view as view_module

    try:
        (plan.directory / rundir.LOGS).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"cannot create sweep directory {plan.directory}: {reason(error)}") from None
    with lock:
        for state in pending:  # a link or a FIFO put in a log's place: refused before any point starts
            atomic.check_own(driver.point_log(state.point))
        atomic.remove_leftovers(plan.directory, [rundir.SWEEP_FILE, rundir.REPORT])
        atomic.remove_leftovers(plan.directory / rundir.LOGS,
                                [rundir.point_config_file(plan.directory, p.name).name for p in plan.points])
        rundir.write_sweep(plan.directory, plan_record(plan))
        if told[0] or told[1]:
            about.add(plan.directory, *told)
        try:
            with view_module.SweepView(states, console) as view:
                driver.drive(runner, pending, view, threads)
        except KeyboardInterrupt as stop:
            why = f"{stop}; " if isinstance(stop, OutputClosed) else ""
            raise Interrupted(f"{why}finished points are kept; run the same sweep again to go on with the others") \
                from None
        finally:  # also after Ctrl-C: the record says which points finished and why others did not
            with shielded():
                rundir.write_sweep(plan.directory, plan_record(plan, states))


def choose_jobs(jobs: Optional[int], devices: Sequence[str], threads: int, device: str) -> int:
    """How many points run at once. A point's thread count is the sweep's (`threads`, 0: torch's
    default of one per core), whatever `jobs` is, so that its numbers do not depend on how many
    ran beside it. On the CPU, None fits as many points as the cores hold; an explicit `jobs` that
    would put more threads than cores to work is refused (oversubscribed, every point runs several
    times slower)."""
    from mnistres.train import devices as devices_module

    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise ConfigError(f"--jobs {jobs}: expected 1 to {MAX_JOBS}")
    if devices:
        return max(jobs or 1, len(devices))
    cores = os.cpu_count() or 1
    per_point = threads or devices_module.default_threads()
    on_cpu = devices_module.torch_device(device).type == "cpu"
    if not on_cpu:
        return jobs or 1
    if jobs is None:
        return max(1, cores // per_point)
    if jobs > 1 and jobs * per_point > cores:
        raise ConfigError(
            f"--jobs {jobs} would run {jobs} points with {per_point} CPU threads each on {cores} cores; a point's "
            f"thread count is part of its result and is not lowered to fit. Add --threads {max(1, cores // jobs)} "
            f"(results then differ in the last digits from {per_point}-thread runs), or leave out --jobs")
    return jobs


def merge_axes(file_axes: Mapping[str, list[Any]], command_axes: Iterable[tuple[str, list[Any]]]) -> dict[str, list[Any]]:
    """Axes from a sweep file, then the command line's (which replace a file axis of the same key)."""
    axes = {config_module.check_key(key, "axes"): list(values) for key, values in file_axes.items()}
    given: set[str] = set()
    for raw_key, values in command_axes:
        key = config_module.check_key(raw_key, "sweep")
        if key in given:
            raise ConfigError(f"axis '{key}' is given twice")
        given.add(key)
        axes[key] = list(values)
    return axes
