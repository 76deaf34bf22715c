"""Read finished work back from disk: run directories, sweeps, and the numbers per variant.

`sweep` (its end table) and `report` both go through here, so they cannot disagree, and
neither looks at anything but the files a run wrote. No torch.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from mnistres.errors import ConfigError
from mnistres.values import echo, text

TARGET_ACC = 0.99  # "epochs to 99 %"
# Keys that say how or where a run was executed, not what was run: they never make two
# runs different variants.
EXECUTION_KEYS = ("name", "out_dir", "data_dir", "download", "device", "threads")


@dataclass
class Run:
    """One run directory as its files describe it."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

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

    @property
    def runs(self) -> list[Run]:
        return [run for variant in self.variants for run in variant.runs]


# --- reading ----------------------------------------------------------------------------
# Run files may come from another machine, another version, or a stranger: everything read here is
# checked for the shape the rest of mnistres relies on, so a damaged file is one line naming it,
# never a traceback from deep inside the report.

MAX_JSON_BYTES = 64 << 20  # metrics.jsonl of 10,000 epochs is about 10 MB
STATUSES = ("completed", "diverged", "interrupted", "failed")
# Per-epoch keys the report, sweeps and --resume read; accuracies are fractions, the others numbers or null.
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def _text_of(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ConfigError(f"{path} is {size:,} bytes, larger than any run file mnistres writes")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(_text_of(path))
    except (json.JSONDecodeError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise ConfigError(f"cannot read {path}: not JSON ({reason})") from None


def read_yaml(path: Path) -> Any:
    from mnistres import yamlfile

    return yamlfile.load(path)


def read_history(metrics: Path) -> list[dict[str, Any]]:
    """The epochs of metrics.jsonl, one dict each (none if the file is absent), checked."""
    history: list[dict[str, Any]] = []
    if not metrics.is_file():
        return history
    for number, line in enumerate(_text_of(metrics).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
            raise ConfigError(f"{metrics}, line {number}: not JSON ({reason})") from None
        problem = _history_problem(row, history[-1]["epoch"] if history else 0)
        if problem:
            raise ConfigError(f"{metrics}, line {number}: {problem}; it is not a metrics file mnistres wrote")
        history.append(row)
    return history


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _history_problem(row: Any, previous_epoch: int) -> str:
    if not isinstance(row, dict):
        return f"expected an object, found {type(row).__name__}"
    missing = [key for key in HISTORY_KEYS if key not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    epoch = row["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch != previous_epoch + 1:
        return f"epoch {echo(epoch)} where epoch {previous_epoch + 1} belongs"
    for key in ("train_acc", "val_acc"):
        if not (_is_number(row[key]) and 0 <= row[key] <= 1):
            return f"{key} {echo(row[key])} is not a fraction"
    for key in ("train_loss", "val_loss", "seconds", "lr", "images_per_s", "eval_seconds"):
        if row.get(key) is not None and not _is_number(row[key]):
            return f"{key} {echo(row[key])} is not a number"
    return ""


def _summary_problem(summary: Any) -> str:
    """What makes `summary` unusable for the report, sweeps and --resume ("" if nothing)."""
    if not isinstance(summary, dict):
        return f"expected an object, found {type(summary).__name__}"
    expected: dict[str, tuple[type, ...]] = {
        "status": (str,), "message": (str,), "best": (dict,), "final": (dict,), "per_class": (list,),
        "confusion_matrix": (list,), "diverged_at": (dict,), "device": (str,), "versions": (dict,),
        "started": (str,), "finished": (str,), "val_set": (str,), "train_images": (int,), "val_images": (int,),
        "parameters": (int,), "plugins": (dict,), "numerics": (dict,),
    }
    for key, kinds in expected.items():
        if key in summary and summary[key] is not None and not isinstance(summary[key], kinds):
            return f"{key} holds {type(summary[key]).__name__}, expected {kinds[0].__name__}"
    if summary.get("status") not in STATUSES:
        return f"status {echo(summary.get('status'))} is none of {', '.join(STATUSES)}"
    matrix = summary.get("confusion_matrix") or []
    if matrix and not (len(matrix) <= 1000 and all(isinstance(row, list) and len(row) == len(matrix)
                                                   and all(isinstance(n, int) and n >= 0 for n in row)
                                                   for row in matrix)):
        return "confusion_matrix is not a square table of counts"
    for row in summary.get("per_class") or []:
        if not (isinstance(row, dict) and isinstance(row.get("class"), int)
                and all(row.get(k) is None or _is_number(row.get(k)) for k in ("accuracy", "precision", "recall", "f1"))):
            return "per_class holds a row that is not a class's metrics"
    for key in ("diverged_at", "best"):
        for field_name, value in (summary.get(key) or {}).items():
            if not (value is None or _is_number(value)):
                return f"{key}.{field_name} {echo(value)} is not a number"
    if any(not isinstance(v, str) for v in (summary.get("versions") or {}).values()):
        return "versions holds something other than text"
    return ""


def _config_problem(config: Any) -> str:
    """A run's config.yaml must be a mapping of plain values (its keys are checked where they are used)."""
    if not isinstance(config, dict):
        return f"expected a mapping, found {type(config).__name__}"
    for key, value in config.items():
        items = value if isinstance(value, list) else [value]
        if not isinstance(key, str) or not all(isinstance(item, (str, int, float, bool)) or item is None
                                               for item in items):
            return f"{echo(key)} holds {echo(value)}, not a plain value"
    return ""


def _checked(path: Path, document: Any, problem: str, what: str) -> Any:
    if problem:
        raise ConfigError(f"{path}: {problem}; it is not {what} mnistres wrote")
    return document


def read_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json, checked."""
    summary = read_json(path)
    return _checked(path, summary, _summary_problem(summary), "a summary")


def read_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml as plain values, checked for shape ({} when there is none)."""
    if not path.is_file():
        return {}
    config = read_yaml(path)
    return _checked(path, config, _config_problem(config), "a config")


def load_run(path: Path) -> Run:
    return Run(path, read_config(path / "config.yaml"), read_summary(path / "summary.json"),
               read_history(path / "metrics.jsonl"))


def is_run(path: Path) -> bool:
    return (path / "summary.json").is_file()


def is_sweep(path: Path) -> bool:
    return (path / "sweep.yaml").is_file()


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
        elif is_run(path):
            loose.append(load_run(path))
        else:
            children = sorted(child for child in path.iterdir() if child.is_dir())
            sweeps = [child for child in children if is_sweep(child)]
            runs = [child for child in children if is_run(child) and not is_sweep(child)]
            if not sweeps and not runs:
                raise ConfigError(
                    f"{path} is neither a run directory (summary.json) nor a sweep directory (sweep.yaml), "
                    f"and holds neither"
                )
            studies.extend(load_sweep(child) for child in sweeps)
            loose.extend(load_run(child) for child in runs)
    if loose:
        studies.append(study_of("runs", None, loose))
    return studies


def read_sweep(path: Path) -> dict[str, Any]:
    """A sweep directory's sweep.yaml, checked: every point names a folder inside the sweep."""
    record_path = path / "sweep.yaml"
    plan = read_yaml(record_path)
    return _checked(record_path, plan, _sweep_problem(plan), "a sweep file")


def _sweep_problem(plan: Any) -> str:
    if not isinstance(plan, dict) or not isinstance(plan.get("points"), list):
        return "it lists no points"
    if not isinstance(plan.get("axes", {}), dict) or not isinstance(plan.get("base", {}), dict):
        return "axes or base is not a mapping"
    for point in plan["points"]:
        if not isinstance(point, dict) or not isinstance(point.get("name"), str):
            return f"point {echo(point)} has no name"
        name = point["name"]
        # A point is a folder inside the sweep: never a path that leads elsewhere.
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            return f"point name {echo(name)} is not a folder name"
        if not isinstance(point.get("values", {}), dict) or not all(
                isinstance(point.get(k, ""), str) for k in ("status", "message")):
            return f"point {echo(name)} is malformed"
    return ""


def load_sweep(path: Path) -> Study:
    plan = read_sweep(path)
    runs = [load_run(path / point["name"]) for point in plan["points"] if is_run(path / point["name"])]
    varied = [key for key in plan.get("axes", {}) if key != "seed"]
    study = study_of(path.name, path, runs, varied)
    study.missing = [(point["name"], point.get("status", "not run"), point.get("message", ""))
                     for point in plan["points"] if not is_run(path / point["name"])]
    return study


def study_of(title: str, path: Optional[Path], runs: list[Run], varied: Optional[list[str]] = None) -> Study:
    """Group runs into variants by the keys that differ between them (seed and execution aside)."""
    if varied is None:
        keys = sorted({key for run in runs for key in run.config} - set(EXECUTION_KEYS) - {"seed"})
        varied = [key for key in keys if len({_hashable(run.config.get(key)) for run in runs}) > 1]
    variants: dict[tuple, Variant] = {}
    for run in runs:
        values = {key: run.config.get(key) for key in varied}
        key = tuple(_hashable(value) for value in values.values())
        if key not in variants:
            label = ", ".join(f"{k}={format_value(v)}" for k, v in values.items()) if varied else run.name
            variants[key] = Variant(label, values)
        variants[key].runs.append(run)
    return Study(title, path, varied, list(variants.values()))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


format_value = text  # a config value as a user would type it (values.text owns the rule)


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
        """"3" when every run completed, else the count of each status."""
        if list(self.statuses) == ["completed"]:
            return str(self.runs)
        return ", ".join(f"{count} {status}" for status, count in self.statuses.items())

    @property
    def target_text(self) -> str:
        if not self.usable:
            return "—"
        if not self.reached_target:
            return "not reached"
        text = self.epochs_to_target.plain(1) if self.reached_target > 1 else f"{self.epochs_to_target.mean:.0f}"
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
            "—" if stats.best_epoch.mean is None else f"{stats.best_epoch.mean:.{1 if stats.best_epoch.n > 1 else 0}f}",
            stats.target_text, f"{stats.seconds_per_epoch.mean:.1f}" if stats.seconds_per_epoch.mean else "—",
            stats.status_text,
        ])
    return rows
