"""The Optuna study behind a tune directory: where it is stored, the sampler and pruner, who owns which
trial, and how many trials count. The only module (with `pruning`) that imports Optuna, inside functions.

Several `mnistres tune` processes may work on one study, on one machine or many (a shared journal file
or a database URL): each holds a lock in OWNERS for as long as it runs and writes its name on each trial it
drives. A RUNNING trial whose owner's lock is free (the process was stopped or killed) is taken over by
the next process that looks, and its run directory resumed from its last epoch: never lost, never run
twice. With a database, trials also send heartbeats, and one whose heartbeat stopped on another machine is
failed and retried (Optuna's `fail_stale_trials` and retry callback).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from mnistres.core.lock import Lock, LockedError, holder_state
from mnistres.errors import ConfigError
from mnistres.runs import rundir

SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "hyperband", "none")
# Trial system attrs: who drives it, a surplus ask, and (Optuna's retry callback's) what it retries.
OWNER_ATTR, SURPLUS_ATTR, RETRIED_ATTR, RETRY_HISTORY_ATTR = "mnistres_owner", "mnistres_surplus", "failed_trial", \
    "retry_history"
SETTINGS_ATTR = "mnistres"  # the study's user attr: the search every process must share
HEARTBEAT_S, GRACE_S = 30, 180  # a database study's heartbeats; a trial silent this long elsewhere is stale
UNOWNED_GRACE_S = 60  # a RUNNING trial nobody has put its name on yet, this old, was left by a process that died


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError('mnistres tune needs Optuna: pip install "mnistres[tune]"') from None
    # Set at every call, not once: a caller's warnings.catch_warnings() (pytest's, for one) restores the filters.
    # (filterwarnings replaces an identical filter instead of adding a second.)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its INFO line per trial would cut into the live table
    # Heartbeats and the stale-trial retry are "experimental" in Optuna, and it warns that heartbeats are meant for
    # Study.optimize: tune uses them knowingly (ask and tell, beating itself), so these are not the user's news.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    return optuna


def storage_place(given: Optional[str], directory: Path) -> str:
    """What --storage names, as tune.yaml records it: a database URL as given, a journal file made
    absolute (a worker on another machine opens it by that path); none given: the tune directory's journal."""
    if not given:
        return str((Path(directory) / rundir.STUDY_JOURNAL).resolve())
    if given.startswith("sqlite:///") and given != "sqlite:///:memory:":  # a file too: made absolute, as a journal's
        return "sqlite:///" + str(Path(given.removeprefix("sqlite:///")).expanduser().resolve())
    if "://" in given:
        return given
    return str(Path(given).expanduser().resolve())


def open_storage(place: str) -> Any:
    """The storage at `place`: a database URL (with heartbeats), or a journal file (file locks; any
    filesystem the processes share)."""
    optuna = require_optuna()
    try:
        if "://" in place:
            # Optuna 4.9 renamed the retry callback and its argument; before, only the old names exist.
            retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            argument = "heartbeat_stale_trial_callback" if retry is not None else "failed_trial_callback"
            retry = retry or optuna.storages.RetryFailedTrialCallback
            return optuna.storages.RDBStorage(place, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                              **{argument: retry(max_retry=3)})
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        Path(place).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(place))
    except (ImportError, ValueError, OSError) as error:
        raise ConfigError(f"--storage {place}: cannot open it ({type(error).__name__}: {error})") from None
    except Exception as error:  # SQLAlchemy's: an unknown dialect, a server that does not answer
        raise ConfigError(f"--storage {place}: cannot open it ({type(error).__name__}: {str(error)[:200]})") from None


def make_pruner(settings: dict[str, Any]) -> Any:
    """The pruner a study's settings name (Optuna does not store it: every process rebuilds it from these)."""
    optuna = require_optuna()
    kind = settings["name"]
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings["startup_trials"],
                                           n_warmup_steps=settings["from_epoch"])  # steps are epochs
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=settings["min_epochs"], max_resource=settings["max_epochs"],
                                              reduction_factor=settings["reduction_factor"])
    return optuna.pruners.NopPruner()


def pruner_settings(name: str, epochs: int) -> dict[str, Any]:
    """A pruner's settings for a search of `epochs`-epoch trials: the median pruner waits for five trials to
    finish and judges from the second epoch on (the first, for trials of one or two epochs), so that slow
    starters such as sigmoid networks are not cut at once; Hyperband's brackets span 1 to `epochs` epochs."""
    if name not in PRUNERS:
        raise ConfigError(f"--pruner {name}: expected {' | '.join(PRUNERS)}")
    if name == "median":
        return {"name": name, "startup_trials": 5, "from_epoch": 2 if epochs >= 3 else 1}
    if name == "hyperband":
        return {"name": name, "min_epochs": 1, "max_epochs": epochs, "reduction_factor": 3}
    return {"name": name}


def make_sampler(name: str, seed: int, space: Any) -> Any:
    optuna = require_optuna()
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401 - Optuna's CMA-ES needs it
        except ImportError:
            raise ConfigError('--sampler cmaes needs the cmaes package: pip install "mnistres[tune]"') from None
        # Choices are not CMA-ES's: they are drawn at random beside it (Optuna warns once; we say it here).
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":  # `check_grid` made sure that every key has a grid
        from mnistres.tune.space import to_distributions

        held = to_distributions(space)  # choices as Optuna holds them; a range's steps as numbers
        grid = {key: list(held[key].choices) if param.choices is not None else param.grid()
                for key, param in space.params.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    raise ConfigError(f"--sampler {name}: expected {' | '.join(SAMPLERS)}")


def check_grid(space: Any, trials: int) -> None:
    """--sampler grid: every key must have finitely many values, and --trials no more than their combinations."""
    import math

    grids = {key: param.grid() for key, param in space.params.items()}
    endless = sorted(key for key, values in grids.items() if values is None)
    if endless:
        raise ConfigError(f"--sampler grid needs choices or ranges with a step: {', '.join(endless)} "
                          f"{'has' if len(endless) == 1 else 'have'} neither")
    size = math.prod(len(values) for values in grids.values())
    if trials > size:
        raise ConfigError(f"--sampler grid: the grid has {size:,} points; ask for at most --trials {size:,}")


def process_seed(seed: int, trials_before: int, shared: bool) -> int:
    """The sampler's seed in this process: from --seed and the trials the study already holds, so that a
    resumed search draws new parameters rather than its first ones again; on a shared --storage also
    from this process, so that processes started together draw differently."""
    salt = f"{socket.gethostname()}:{os.getpid()}" if shared else ""
    digest = hashlib.sha256(f"{seed}:{trials_before}:{salt}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# --- owners ---------------------------------------------------------------------------------------------


@dataclass
class Owner:
    """This process, as the owner of the trials it drives: its lock in OWNERS, held while it runs."""

    directory: Path
    name: str = ""
    lock: Optional[Lock] = None

    def __enter__(self) -> "Owner":
        # Unique per search, not only per process: a library user may run two searches in one process.
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        folder = self.directory / rundir.OWNERS / self.name
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = Lock(folder, what="tune process")
        self.lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.lock is not None:
            self.lock.release()
        try:
            (self.directory / rundir.OWNERS / self.name).rmdir()
        except OSError:
            pass


def owner_gone(directory: Path, owner: str) -> bool:
    """Is the process that wrote `owner` on a trial gone? (One on another machine cannot be checked: no.)"""
    return holder_state(directory / rundir.OWNERS / owner) == "none"


def orphaned(directory: Path, trial: Any) -> bool:
    """A RUNNING trial nobody drives any more."""
    owner = trial.system_attrs.get(OWNER_ATTR)
    if owner is None:  # asked for, but its process died before putting its name on it
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        return time.time() - started > UNOWNED_GRACE_S
    return owner_gone(directory, owner)


class TakeOver:
    """Held while a process takes over an orphaned trial, so that two processes never take the same one."""

    def __init__(self, directory: Path) -> None:
        self.lock = Lock(directory / rundir.OWNERS, what="tune process")

    def __enter__(self) -> bool:
        try:
            self.lock.acquire()
        except LockedError:
            return False  # another process is taking one over now: look again later
        return True

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


# --- counting -------------------------------------------------------------------------------------------


def retried(trials: list[Any]) -> set[int]:
    """Trials failed as stale and retried as a new one (Optuna's retry callback lists each retry's forebears)."""
    found: set[int] = set()
    for trial in trials:
        history = trial.system_attrs.get(RETRY_HISTORY_ATTR) or []
        found.update(n for n in history if isinstance(n, int))
        if isinstance(trial.system_attrs.get(RETRIED_ATTR), int):
            found.add(trial.system_attrs[RETRIED_ATTR])
    return found


def counted(trials: list[Any], up_to: Optional[int] = None) -> int:
    """Trials that count towards --trials: all but surplus ones (asked for beyond the count by processes
    asking at once) and failed ones that were retried as a new trial (that one counts instead)."""
    gone = retried(trials)
    return sum(1 for t in trials if (up_to is None or t.number <= up_to) and not t.system_attrs.get(SURPLUS_ATTR)
               and t.number not in gone)


def counts(trial: Any, trials: list[Any]) -> bool:
    """Whether `trial` is shown and reported as part of the search."""
    return not trial.system_attrs.get(SURPLUS_ATTR) and trial.number not in retried(trials)


def trial_in(record: dict[str, Any], number: int) -> Any:
    """Trial `number` of the study a tune record names, with the study's own pruner, to report to."""
    optuna = require_optuna()
    storage = open_storage(record["storage"])
    try:
        loaded = optuna.load_study(study_name=record["study"], storage=storage,
                                   sampler=optuna.samplers.RandomSampler())  # a trial's process samples nothing
        settings = loaded.user_attrs.get(SETTINGS_ATTR) or {}
        loaded.pruner = make_pruner(settings.get("pruner") or {"name": "none"})
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(record["study"]), number)
    except KeyError:
        raise ConfigError(f"the study {record['study']} in {record['storage']} has no trial {number}") from None
    return optuna.trial.Trial(loaded, trial_id)
