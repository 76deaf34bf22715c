"""`mnistres tune`: a search of a space on an Optuna study, every trial an ordinary run directory.

Top to bottom: the search (`plan_from`: the space file, the settings every trial shares, checked once)
-> the tune directory and its study (created, or joined with the same settings) -> trials through an
executor, driven by the sweep's `driver` (a trial is asked for whenever a slot is free; a trial whose
process is gone is taken over and resumed first) -> each outcome told to the study -> the best trial's
model measured once on the test set.

The objective is the best epoch's accuracy on the held-out part of the training set (`val_split`): the
test set is never used to choose. Running the same command again continues to --trials in all.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from mnistres import config as config_module
from mnistres.config import RunConfig
from mnistres.core import atomic
from mnistres.core.interrupts import Interrupted, OutputClosed, deferred, shielded, sigterm_as_interrupt
from mnistres.core.values import text
from mnistres.errors import ConfigError, WriteError, reason
from mnistres.resolve import resolve
from mnistres.runs import about, names, rundir
from mnistres.runs.results import objective_of, rank
from mnistres.sweep import driver
from mnistres.sweep.plan import Point, choose_jobs, executor_spec
from mnistres.sweep.view import PointState
from mnistres.tune import space as space_module, study as study_module
from mnistres.tune.space import Space

DEFAULT_VAL_SPLIT = 0.1  # the held-out fraction a search chooses on, unless the space or options say otherwise
MAX_TRIALS = rundir.MAX_POINTS
CALLBACK = "tune_trial"


@dataclass(frozen=True)
class Search:
    directory: Path  # OUT_DIR/NAME: tune.yaml, the trials' run directories, logs/
    study: str  # the study's name in its storage
    storage: str  # a database URL, or a journal file's absolute path
    base: RunConfig  # the settings every trial shares (the space's keys at their base values)
    space: Space
    trials: int  # in all, counting those an earlier or another process ran
    sampler: str
    pruner: dict[str, Any]  # the pruner's settings (every process rebuilds it from these)
    seed: int  # the sampler's, and every trial's training seed
    shared: bool  # --storage given: other processes may work on the study

    def settings(self) -> dict[str, Any]:
        """What makes two searches the same search: a second process (or a rerun) must ask for these."""
        shared = {k: v for k, v in rundir.result_settings(self.base.to_dict()).items() if k not in self.space.params}
        return {"space": self.space.record(), "base": shared,
                "sampler": self.sampler, "pruner": self.pruner, "seed": self.seed}


def plan_from(space_file: str | Path, options: Mapping[str, Any], sets: list[str], callbacks: list[str],
              preset: Optional[str], *, trials: int, sampler: str, pruner: str, storage: Optional[str],
              study: Optional[str] = None) -> Search:
    """The search a command line describes; everything checked before anything is written."""
    if not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(f"--trials {trials}: expected 1 to {MAX_TRIALS:,}")
    if sampler not in study_module.SAMPLERS:
        raise ConfigError(f"--sampler {sampler}: expected {' | '.join(study_module.SAMPLERS)}")
    searched, fixed = space_module.load(space_file)
    base = config_module.layered({"val_split": DEFAULT_VAL_SPLIT, **fixed}, str(space_file), options, sets,
                                 callbacks, preset)
    if base.val_split <= 0:
        raise ConfigError("tune chooses on a held-out part of the training set, never the test set: val_split must "
                          f"be above 0 (the default for tune is {DEFAULT_VAL_SPLIT})")
    if any(spec.split(":")[0].strip().replace("-", "_") == CALLBACK for spec in base.callbacks):
        raise ConfigError(f"{CALLBACK} is added to each trial by tune itself; leave it out of the callbacks")
    space = space_module.check(searched, base, str(space_file))
    stem = Path(space_file).stem
    name = base.name or (stem if stem.endswith("tune") else f"{stem}-tune")
    problem = names.name_problem(name)
    if problem:
        raise ConfigError(f"--name {name!r}: {problem}")
    directory = Path(base.out_dir) / name
    if sampler == "grid":
        study_module.check_grid(space, trials)
    return Search(directory, study or name, study_module.storage_place(storage, directory), base, space, trials,
                  sampler, study_module.pruner_settings(pruner, base.epochs), base.seed, storage is not None)


# --- the tune directory and its study ----------------------------------------------------------------


def check_directory(search: Search) -> None:
    """A tune directory is continued by the same search only; anything else there is refused."""
    directory = search.directory
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} exists and is not a folder")
    if not rundir.is_tune(directory):
        # Another process of the same search may be making it now: only what a tune directory holds is allowed.
        foreign = [p.name for p in directory.iterdir() if not rundir.tune_part(p.name)] if directory.is_dir() else []
        if foreign:
            raise ConfigError(f"{directory} exists and is not a tune directory (it holds {foreign[0]}); choose "
                              f"another --name")
        return
    record = rundir.read_tune(directory)
    if record.get("storage") != search.storage or record.get("study") != search.study:
        raise ConfigError(f"{directory}'s study is {record.get('study')} in {record.get('storage')}; run it with the "
                          f"same --storage (or none), or choose another --name")
    _same_search(str(directory / rundir.TUNE_FILE), record, search)


def _same_search(where: str, stored: Mapping[str, Any], search: Search) -> None:
    wanted = search.settings()
    changed = [key for key in wanted if stored.get(key) != wanted[key]]
    if not changed:
        return
    details = []
    for key in changed:
        if isinstance(wanted[key], dict) and isinstance(stored.get(key), dict):
            details += [f"{key}.{k}: {text(stored[key].get(k))} -> {text(wanted[key].get(k))}"
                        for k in sorted(set(wanted[key]) | set(stored[key]), key=str)
                        if stored[key].get(k) != wanted[key].get(k)]
        else:
            details.append(f"{key}: {text(stored.get(key))} -> {text(wanted[key])}")
    raise ConfigError(f"{where} holds a search with other settings ({'; '.join(details[:6])}); use --name for a new "
                      f"search")


def open_study(search: Search, storage: Any) -> Any:
    """The study, created by the first process (with the search's settings recorded on it), joined by the rest."""
    optuna = study_module.require_optuna()
    try:
        study = optuna.create_study(study_name=search.study, storage=storage, direction="maximize",
                                    load_if_exists=True, pruner=study_module.make_pruner(search.pruner))
    except Exception as error:
        raise ConfigError(f"cannot open the study {search.study} in {search.storage}: {error}") from None
    if study.directions[0] != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"the study {search.study} in {search.storage} minimises; a tune study maximises accuracy")
    stored = study.user_attrs.get(study_module.SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(study_module.SETTINGS_ATTR, json.loads(json.dumps(search.settings())))
    else:
        _same_search(f"the study {search.study} in {search.storage}", stored, search)
    return study


# --- running -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    search: Search
    states: list[PointState] = field(default_factory=list)  # the trials this process ran
    trials: list[Any] = field(default_factory=list)  # every trial of the study at the end (Optuna FrozenTrials)
    best: Optional[Any] = None  # the best trial, if one finished
    test: Optional[dict[str, Any]] = None  # the best trial's model on the test set

    def params(self, trial: Any) -> dict[str, Any]:
        """A trial's parameters, typed as RunConfig takes them (Optuna holds choices as text)."""
        return space_module.typed(self.search.space, trial.params)

    def count(self, state: str) -> int:
        return sum(t.state.name == state for t in self.trials if study_module.counts(t, self.trials))


class Trials:
    """The trials this process drives: asked of the study, or taken over from a process that is gone."""

    def __init__(self, search: Search, study: Any, storage: Any, owner: study_module.Owner,
                 states: list[PointState]) -> None:
        self.search, self.study, self.storage, self.owner, self.states = search, study, storage, owner, states
        self.study_id = self.storage.get_study_id_from_name(search.study)
        self.distributions = space_module.to_distributions(search.space)
        self.numbers: dict[int, int] = {}  # id(state) -> its trial's number
        self.heartbeat = isinstance(self.storage, study_module.require_optuna().storages.RDBStorage)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def point(self, number: int, params: Mapping[str, Any]) -> Point:
        """The trial's run: the shared settings with its parameters, in TUNE_DIR/trial-NNNN."""
        values = space_module.typed(self.search.space, params)
        name = rundir.trial_name(number)
        config = self.search.base.replace(**values, name=name, out_dir=str(self.search.directory),
                                          callbacks=(*self.search.base.callbacks, CALLBACK))
        return Point(name, values, config.seed, resolve(config))

    def _state(self, number: int, params: Mapping[str, Any]) -> PointState:
        state = PointState(self.point(number, params))
        self.numbers[id(state)] = number
        self.states.append(state)
        return state

    def next(self) -> Optional[PointState]:
        """The next trial to run: one whose process is gone, else a new one while fewer than --trials count."""
        optuna = study_module.require_optuna()
        if self.heartbeat:
            optuna.storages.fail_stale_trials(self.study)
        while True:
            trials = self.study.get_trials(deepcopy=False)
            taken = self._take_over(trials)
            if taken is None:
                break
            state = self._state(*taken)
            # Its process was stopped after the run recorded its end, before the study heard of it: tell it now.
            if rundir.kept_status(state.point.run_dir, state.point.config.to_dict()):
                state.status, state.kept = rundir.stored_status(state.point.run_dir) or "completed", True
                driver.read_progress(state)
                self.ended(state)
                continue
            return state
        waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)  # enqueued: asked for first
        if study_module.counted(trials) >= self.search.trials and not waiting:
            return None
        trial = self.study.ask(self.distributions)
        trial_id = self.trial_id(trial.number)
        self.storage.set_trial_system_attr(trial_id, study_module.OWNER_ATTR, self.owner.name)
        if study_module.counted(self.study.get_trials(deepcopy=False), up_to=trial.number) > self.search.trials:
            # Another process asked at the same moment and took the last place: this one does not count.
            self.storage.set_trial_system_attr(trial_id, study_module.SURPLUS_ATTR, True)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        return self._state(trial.number, trial.params)

    def _take_over(self, trials: list[Any]) -> Optional[tuple[int, dict[str, Any]]]:
        """A RUNNING trial whose process is gone, now this process's: (number, params); None if there is none."""
        running = study_module.require_optuna().trial.TrialState.RUNNING
        mine = set(self.numbers.values())
        for trial in trials:
            if trial.state != running or trial.number in mine or not study_module.orphaned(self.search.directory, trial):
                continue
            with study_module.TakeOver(self.search.directory) as got:
                fresh = self.storage.get_trial(self.trial_id(trial.number)) if got else None
                if fresh is not None and fresh.state == running and study_module.orphaned(self.search.directory, fresh):
                    self.storage.set_trial_system_attr(self.trial_id(fresh.number), study_module.OWNER_ATTR,
                                                       self.owner.name)
                    return fresh.number, dict(fresh.params)
        return None

    def ended(self, state: PointState) -> None:
        """Tell the study how the trial ended: a value (completed, or diverged: its best epoch, else 0), pruned,
        or failed. A Ctrl-C waits until the study has heard (else a finished trial would look unfinished)."""
        optuna = study_module.require_optuna()
        number = self.numbers[id(state)]
        with deferred():
            try:
                if state.status in ("completed", "diverged"):
                    summary = rundir.read_summary(state.point.run_dir / rundir.SUMMARY)
                    self.study.tell(number, objective_of(summary) or 0.0)  # diverged before any epoch: 0
                elif state.status == "pruned":
                    self.study.tell(number, state=optuna.trial.TrialState.PRUNED)
                else:
                    self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            except (RuntimeError, ValueError) as error:  # finished elsewhere meanwhile (failed as stale, say)
                state.message = f"{state.message}; the study did not take its result: {error}".lstrip("; ")

    def beat(self, stop: threading.Event) -> None:
        """A database study's heartbeats for the trials this process drives (a thread)."""
        while not stop.wait(study_module.HEARTBEAT_S / 2):
            for state in list(self.states):
                if state.status in ("pending", "running"):
                    try:
                        self.storage.record_heartbeat(self.trial_id(self.numbers[id(state)]))
                    except Exception:  # a database that does not answer now: the next beat tries again
                        pass


def run(search: Search, *, jobs: Optional[int] = None, console: Any = None, executor: str = "local",
        tags: Iterable[str] = (), note: Optional[str] = None) -> Outcome:
    """Run trials until the study holds `search.trials` (this process's and others'), then measure the best
    trial's model on the test set. Ctrl-C or SIGTERM stops the running trials resumably (they stay running in
    the study; the next `mnistres tune` of the same search resumes them) and raises `Interrupted`. `tags` and
    `note` go on the search (its about.yaml; its trials show them too)."""
    from mnistres.core import display
    from mnistres.registry import executors
    from mnistres.train import data as data_module, devices as devices_module
    from mnistres.tune.view import TuneView

    study_module.require_optuna()  # a missing extra: one line, before anything else
    console = console or display.console(wide=True)
    base = search.base
    spec = executor_spec(executor)
    told = about.checked(tags, note)
    with sigterm_as_interrupt():
        devices_module.torch_device(base.device)
        devices_module.check_threads(base.threads)
        threads = base.threads or devices_module.default_threads()
        jobs = choose_jobs(jobs, (), base.threads, base.device)
        runner = executors.build(spec, jobs=jobs, devices=[], threads=threads)
        atomic.check_place(search.directory / rundir.LOGS, "tune directory", room=names.POINT_NAME_LIMIT + 64)
        check_directory(search)
        data_module.ensure_files(base.dataset, data_module.resolve_data_dir(base.data_dir), base.download)
        storage = study_module.open_storage(search.storage)
        study = open_study(search, storage)
        try:
            (search.directory / rundir.LOGS).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WriteError(f"cannot create tune directory {search.directory}: {reason(error)}") from None
        if not rundir.is_tune(search.directory):
            rundir.write_tune(search.directory, {"study": search.study, "storage": search.storage,
                                                  **json.loads(json.dumps(search.settings()))})
        if told[0] or told[1]:
            about.add(search.directory, *told)
        states: list[PointState] = []
        before = len(study.get_trials(deepcopy=False))
        study.sampler = study_module.make_sampler(search.sampler,
                                                  study_module.process_seed(search.seed, before, search.shared),
                                                  search.space)
        with study_module.Owner(search.directory) as owner:
            trials = Trials(search, study, storage, owner, states)
            stop = threading.Event()
            beating = threading.Thread(target=trials.beat, args=(stop,), daemon=True) if trials.heartbeat else None
            try:
                runner.open()
                if beating is not None:
                    beating.start()
                with TuneView(states, console, search, before) as view:
                    driver.drive(runner, [], view, threads, more=trials.next, ended=trials.ended)
            except KeyboardInterrupt as interrupt:
                why = f"{interrupt}; " if isinstance(interrupt, OutputClosed) else ""
                raise Interrupted(f"{why}finished trials are kept in the study; run the same command again to "
                                  f"resume the stopped ones and go on to {search.trials} trials") from None
            finally:
                stop.set()
                with shielded():
                    runner.close()
    outcome = Outcome(search, states, study.get_trials(deepcopy=False))
    outcome.best = best_trial(outcome.trials)
    if outcome.best is not None:
        outcome.test = measure_on_test(search, outcome.best, threads)
    return outcome


def best_trial(trials: list[Any]) -> Optional[Any]:
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and study_module.counts(t, trials)]
    return min(complete, key=lambda t: rank(t.value, t.number)) if complete else None


def measure_on_test(search: Search, best: Any, threads: int) -> dict[str, Any]:
    """The best trial's best.pt on the test set, once per best trial (kept in best-on-test.json)."""
    from mnistres.inference.evaluate import evaluate_checkpoint

    path = search.directory / rundir.TEST_RESULT
    checkpoint = search.directory / rundir.trial_name(best.number) / rundir.BEST
    try:
        kept = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        kept = None
    if isinstance(kept, dict) and kept.get("trial") == best.number and kept.get("held_out_acc") == best.value:
        return kept
    measured = evaluate_checkpoint(checkpoint, split="test", data_dir=search.base.data_dir, device=search.base.device,
                                   download=search.base.download, threads=threads)
    result = {"trial": best.number, "run": rundir.trial_name(best.number), "held_out_acc": best.value,
              "test_acc": measured["accuracy"], "test_loss": measured["loss"], "test_images": measured["images"],
              "checkpoint": str(checkpoint), "epoch": measured["epoch"],
              "params": space_module.typed(search.space, best.params)}
    atomic.write_text(path, json.dumps(result, indent=2) + "\n")
    return result
