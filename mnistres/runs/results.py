"""Read finished work back from disk: run directories, sweeps, and the numbers per variant.

`sweep` (its end table) and `report` both go through here, so they cannot disagree, and
neither looks at anything but the files a run wrote. No torch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from mnistres.runs import rundir
from mnistres.errors import ConfigError
from mnistres.runs.rundir import is_run, is_sweep, read_config, read_history, read_summary, read_sweep
from mnistres.core.values import shown

TARGET_ACC = 0.99  # "epochs to 99 %"


@dataclass
class Run:
    """One run directory as its files describe it."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def status(self) -> str:
        """As `runs` says it (`rundir.live_status`): a run killed while running is interrupted."""
        return rundir.live_status(self.path, self.summary)[0]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    def epoch_reaching(self, target: float = TARGET_ACC) -> Optional[int]:
        return next((row["epoch"] for row in self.history if (row.get("val_acc") or 0) >= target), None)


@dataclass
class Variant:
    """The runs that share every setting but the seed."""

    label: str  # e.g. "lr=0.01" or "optimizer=sgd, batch_size=32"
    values: dict[str, Any]  # the varied keys and their values
    runs: list[Run] = field(default_factory=list)

    @property
    def usable(self) -> list[Run]:
        """Runs whose numbers count: they finished all their epochs (or stopped early on purpose)."""
        return [run for run in self.runs if run.status == "completed" and run.history]


@dataclass
class Study:
    """A set of runs compared with each other: one sweep, or the loose runs given to `report`."""

    title: str
    path: Optional[Path]
    varied: list[str]  # keys whose values differ between variants (seed excluded)
    variants: list[Variant]
    # Sweep points with no run directory: (name, status, reason) as sweep.yaml records them.
    missing: list[tuple[str, str, str]] = field(default_factory=list)
    note: str = ""  # something a reader must know first (runs of several datasets split into studies)
    tune: Optional[dict[str, Any]] = None  # a tune directory's record (tune.yaml): the search's space and settings

    @property
    def trials(self) -> list["Trial"]:
        """A tune study's trials, as their run directories describe them (none for other studies)."""
        if self.tune is None:
            return []
        return sorted((trial_of(run, list(self.tune["space"])) for run in self.runs), key=lambda t: t.number)

    @property
    def runs(self) -> list[Run]:
        return [run for variant in self.variants for run in variant.runs]


# --- reading ------------------------------------------------------------------------------
# The files themselves are read (and checked) by `rundir`.


@dataclass
class Trial:
    """A tune trial, from its run directory: its number, what it chose, how it ended and its objective."""

    number: int
    run: Run
    params: dict[str, Any]
    value: Optional[float]  # the best epoch's held-out accuracy (what the search maximises); None: no epoch


BEST_SHOWN = 5  # the best trials a search's end table and its report show


def objective_of(summary: dict[str, Any]) -> Optional[float]:
    """What a search maximises, from a trial's summary.json: its best epoch's held-out accuracy (None: no epoch)."""
    best = (summary.get("best") or {}).get("val_acc")
    return float(best) if isinstance(best, (int, float)) else None


def rank(value: float, number: int) -> tuple[float, int]:
    """Trials ordered best first by this key (sorted ascending): the higher value, and of equals the earlier."""
    return -value, number


def space_distributions(space: dict[str, Any]) -> dict[str, Any]:
    """A search space as tune.yaml records it (`tune.space.Param.record`), as Optuna distributions: choices as
    the text Optuna holds, ranges as ints or floats."""
    from optuna import distributions

    from mnistres.core.values import text

    made: dict[str, Any] = {}
    for key, spec in space.items():
        if "choices" in spec:
            made[key] = distributions.CategoricalDistribution([text(c) for c in spec["choices"]])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            made[key] = distributions.IntDistribution(spec["low"], spec["high"], log=bool(spec.get("log")),
                                                      step=spec.get("step") or 1)
        else:
            made[key] = distributions.FloatDistribution(spec["low"], spec["high"], log=bool(spec.get("log")),
                                                        step=spec.get("step"))
    return made


def trial_of(run: Run, keys: list[str]) -> Trial:
    number = rundir.trial_number(run.name)
    return Trial(-1 if number is None else number, run, {key: run.config.get(key) for key in keys},
                 objective_of(run.summary))


def load_run(path: Path) -> Run:
    return Run(path, read_config(path / rundir.CONFIG), read_summary(path / rundir.SUMMARY),
               read_history(path / rundir.METRICS))


def load_studies(paths: Iterable[Path]) -> list[Study]:
    """Each sweep directory is a study; run directories given directly form one more study
    together. A plain folder such as `runs/` stands for the sweeps and runs directly inside it."""
    studies: list[Study] = []
    loose: list[Run] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"{path} is not a folder (expected a run or sweep directory)")
        if is_sweep(path):
            studies.append(load_sweep(path))
        elif rundir.is_tune(path):
            studies.append(load_tune(path))
        elif is_run(path):
            loose.append(load_run(path))
        else:
            children = sorted(child for child in path.iterdir() if child.is_dir())
            sweeps = [child for child in children if is_sweep(child)]
            tunes = [child for child in children if rundir.is_tune(child)]
            runs = [child for child in children if is_run(child) and not is_sweep(child)]
            if not sweeps and not runs and not tunes:
                raise ConfigError(
                    f"{path} is neither a run directory (summary.json), a sweep directory (sweep.yaml) nor a tune "
                    f"directory (tune.yaml), and holds none"
                )
            studies.extend(load_sweep(child) for child in sweeps)
            studies.extend(load_tune(child) for child in tunes)
            loose.extend(load_run(child) for child in runs)
    if loose:
        # Runs on different datasets are no variants of each other: one study per dataset.
        datasets = sorted({str(run.config.get("dataset", "mnist")) for run in loose})
        for dataset in datasets:
            runs = [run for run in loose if str(run.config.get("dataset", "mnist")) == dataset]
            studies.append(study_of("runs" if len(datasets) == 1 else f"runs on {dataset}", None, runs))
            studies[-1].note = "" if len(datasets) == 1 else (
                f"the runs given are on {' and '.join(datasets)}: each dataset's are reported apart, not as variants")
    return studies


def load_sweep(path: Path) -> Study:
    plan = read_sweep(path)
    runs = [load_run(path / point["name"]) for point in plan["points"] if is_run(path / point["name"])]
    varied = [key for key in plan.get("axes", {}) if key != "seed"]
    study = study_of(path.name, path, runs, varied)
    study.missing = [(point["name"], point.get("status", "not run"), point.get("message", ""))
                     for point in plan["points"] if not is_run(path / point["name"])]
    return study


def load_tune(path: Path) -> Study:
    """A tune directory: its trials' run directories, grouped by the parameters the search chose."""
    record = rundir.read_tune(path)
    runs = [load_run(child) for child in sorted(path.iterdir())
            if child.name.startswith("trial-") and child.is_dir() and is_run(child)]
    study = study_of(path.name, path, runs, list(record["space"]))
    for variant in study.variants:  # a trial is a variant: named by its run (its parameters are in its row)
        variant.label = ", ".join(run.name for run in variant.runs)
    study.tune = record
    return study


def study_of(title: str, path: Optional[Path], runs: list[Run], varied: Optional[list[str]] = None) -> Study:
    """Group runs into variants by the keys that differ between them (seed and execution aside)."""
    if varied is None:
        keys = sorted(key for key in {key for run in runs for key in run.config} if rundir.is_setting(key) and key != "seed")
        varied = [key for key in keys if len({_hashable(run.config.get(key)) for run in runs}) > 1]
    variants: dict[tuple, Variant] = {}
    for run in runs:
        values = {key: run.config.get(key) for key in varied}
        key = tuple(_hashable(value) for value in values.values())
        if key not in variants:
            variants[key] = Variant(", ".join(f"{k}={shown(k, v)}" for k, v in values.items()), values)
        variants[key].runs.append(run)
    if not varied:  # one variant: named by its run, or by its seeds (not by its first run's name alone)
        for variant in variants.values():
            variant.label = _unvaried_label(variant.runs)
    return Study(title, path, varied, list(variants.values()))


def _unvaried_label(runs: list[Run]) -> str:
    """The label of runs that share every setting but the seed: `a` for one run, `seeds 0, 1` for several."""
    if len(runs) == 1:
        return runs[0].name
    seeds = [run.config.get("seed") for run in runs]
    if None in seeds or len(set(seeds)) < len(seeds):
        return f"{len(runs)} runs"
    return "seeds " + ", ".join(str(seed) for seed in sorted(seeds))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# --- numbers per variant ------------------------------------------------------------------


@dataclass
class Spread:
    """Mean and sample standard deviation over seeds (std is None for a single value)."""

    mean: Optional[float]
    std: Optional[float]
    n: int

    @classmethod
    def of(cls, numbers: Iterable[Optional[float]]) -> "Spread":
        clean = [float(x) for x in numbers if isinstance(x, (int, float)) and math.isfinite(x)]
        if not clean:
            return cls(None, None, 0)
        return cls(statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else None, len(clean))

    def percent(self, digits: int = 2) -> str:
        if self.mean is None:
            return "—"
        text = f"{100 * self.mean:.{digits}f}"
        return text + (f" ± {100 * self.std:.{digits}f}" if self.std is not None else "")

    def count(self) -> str:
        """A mean of whole numbers (epochs): as a whole number when every seed gave the same one (`2`, as
        one seed shows it), else with one decimal (`2.5`, or `2.0` for seeds of 1 and 3)."""
        if self.mean is None:
            return "—"
        return f"{self.mean:.0f}" if not self.std else f"{self.mean:.1f}"

    def plain(self, digits: int = 1) -> str:
        if self.mean is None:
            return "—"
        return f"{self.mean:.{digits}f}" + (f" ± {self.std:.{digits}f}" if self.std is not None else "")


@dataclass
class VariantStats:
    label: str
    runs: int
    usable: int
    final_train_acc: Spread
    final_val_acc: Spread
    best_val_acc: Spread
    best_epoch: Spread
    epochs_to_target: Spread  # over the runs that reached the target
    reached_target: int  # how many usable runs reached it
    seconds_per_epoch: Spread
    statuses: dict[str, int]

    @property
    def status_text(self) -> str:
        """"3" when every run completed, else the count of each status; completed runs that logged no epoch
        (so count in no mean) are said apart."""
        empty = self.statuses.get("completed", 0) - self.usable
        counts = dict(self.statuses)
        if empty:
            counts["completed"] -= empty
            counts = {**{k: v for k, v in counts.items() if v}, "completed without epochs (left out)": empty}
        if list(counts) == ["completed"]:
            return str(self.runs)
        return ", ".join(f"{count} {status}" for status, count in counts.items())

    @property
    def target_text(self) -> str:
        if not self.usable:
            return "—"
        if not self.reached_target:
            return "not reached"
        text = self.epochs_to_target.plain(1) if self.epochs_to_target.std else self.epochs_to_target.count()
        return text if self.reached_target == self.usable else f"{text} ({self.reached_target} of {self.usable})"


def variant_stats(variant: Variant) -> VariantStats:
    usable = variant.usable
    statuses: dict[str, int] = {}
    for run in variant.runs:
        statuses[run.status] = statuses.get(run.status, 0) + 1
    reaching = [run.epoch_reaching() for run in usable]
    return VariantStats(
        label=variant.label,
        runs=len(variant.runs),
        usable=len(usable),
        final_train_acc=Spread.of(run.final.get("train_acc") for run in usable),
        final_val_acc=Spread.of(run.final.get("val_acc") for run in usable),
        best_val_acc=Spread.of(max(row["val_acc"] for row in run.history) for run in usable),
        best_epoch=Spread.of(max(run.history, key=lambda row: row["val_acc"])["epoch"] for run in usable),
        epochs_to_target=Spread.of(epoch for epoch in reaching if epoch is not None),
        reached_target=sum(epoch is not None for epoch in reaching),
        seconds_per_epoch=Spread.of(statistics.fmean(row["seconds"] for row in run.history)
                                    for run in variant.runs if run.history),
        statuses=dict(sorted(statuses.items())),
    )


RESULT_HEADERS = ("variant", "final train acc %", "final val acc %", "best val acc %", "best epoch",
                  f"epochs to {100 * TARGET_ACC:g} %", "measured s/epoch", "runs")
# The same columns, named for a terminal table.
RESULT_HEADERS_SHORT = ("variant", "train acc %", "val acc %", "best val %", "best ep",
                        f"ep. to {100 * TARGET_ACC:g}%", "measured s/ep", "runs")


def result_rows(study: Study) -> list[list[str]]:
    """The results table shared by the sweep's end table and the report."""
    rows = []
    for stats in map(variant_stats, study.variants):
        rows.append([
            stats.label, stats.final_train_acc.percent(), stats.final_val_acc.percent(), stats.best_val_acc.percent(),
            stats.best_epoch.count(),
            stats.target_text, f"{stats.seconds_per_epoch.mean:.1f}" if stats.seconds_per_epoch.mean else "—",
            stats.status_text,
        ])
    return rows
