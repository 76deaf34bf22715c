"""The run directory (and the sweep directory): its layout, its name, its files, and what may be done with it.

One owner for:

- the layout: a run directory holds config.yaml, metrics.jsonl (one line per epoch), summary.json,
  last.pt and best.pt, and once completed mistakes.npz; a sweep directory holds sweep.yaml, one run directory per point and
  logs/<point>.log;
- which config keys make a result and which only say where or how it ran (`PLACE_KEYS`,
  `EXECUTION_KEYS`): what may change on --resume, what groups runs into variants, what lets a
  sweep keep an earlier point;
- reading the run files back, checked (a damaged or crafted file is one line naming it, never a
  traceback from deep inside the report), and writing them;
- the status a directory records and the rules on it: may a new run write there
  (`refuse_earlier_run`), may it be resumed (`resume_settings`, `check_resume`), may a sweep keep
  or resume a point (`kept_status`, `resumable`).

Checkpoint files themselves are `checkpoint`'s (torch), the one-writer lock is `lock`'s, atomic
writes and the place checks are `atomic`'s. No torch here.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from mnistres.core import atomic, yamlfile
from mnistres.core.lock import LOCK_FILE
from mnistres.runs import summary as runsummary
from mnistres.errors import ConfigError, MnistresError, WriteError, reason
from mnistres.core.values import echo, is_number
from mnistres.core.wording import article

if TYPE_CHECKING:
    from mnistres.runs.mistakes import Mistakes

# --- layout ---------------------------------------------------------------------------------------

CONFIG, METRICS, SUMMARY, LAST, BEST = "config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt"
MISTAKES = "mistakes.npz"  # a completed run's most confident mistakes on its validation images (`mistakes`)
RUN_FILES = (CONFIG, METRICS, SUMMARY, LAST, BEST, MISTAKES)
SWEEP_FILE, LOGS, REPORT = "sweep.yaml", "logs", "report.md"
ABOUT = "about.yaml"  # what the user says about a run, sweep or search: tags and a note (`about`)

# What each file of a run directory holds, for the reference pages (`python -m mnistres.cli.reference`).
FILE_MEANINGS = {
    CONFIG: "The resolved RunConfig: every key, as the run used it.",
    METRICS: "One JSON object per epoch (the keys below), appended as each epoch ends.",
    SUMMARY: "What the run is and reached: status (running | completed | diverged | pruned | interrupted | failed), final "
             "and best metrics, per-class metrics and the confusion matrix of the last evaluation, times, versions, "
             "device, numerics, the plugin behind each name used, and who runs it (the fields below).",
    LAST: "Checkpoint of the last completed epoch (what --resume continues from).",
    BEST: "Checkpoint of the epoch with the best validation accuracy.",
    MISTAKES: "Once completed: the final model's most confident mistakes on the validation images (index, true and "
              "predicted class, confidence, the pixels), for `report` to draw without a checkpoint; NumPy arrays, "
              "no pickles.",
    LOCK_FILE: "While a process writes the run: its machine, process id, start time and command.",
    ABOUT: "Its tags and note (`--tag`, `--note`, `mnistres runs tag`), when it has any; may change at any time.",
}
SWEEP_FILE_MEANINGS = {
    SWEEP_FILE: "The sweep's plan and each point's state (status, message, attempt), rewritten as points end.",
    REPORT: "The sweep's report, with its figures beside it (unless --no-report).",
    ABOUT: "The sweep's tags and note, which its points take on in listings, when it has any.",
    LOGS + "/": "One log per point (POINT.log) and the config handed to its process (POINT.yaml).",
    "POINT/": "One run directory per point, as above.",
}
# metrics.jsonl's keys, in the order a line holds them.
METRICS_FIELDS = {
    "epoch": "The epoch, from 1.",
    "train_loss": "Mean cross-entropy over every training image of the epoch (summed, not a mean of batch means).",
    "train_acc": "Accuracy over every training image of the epoch, as the weights were when each batch was seen.",
    "lr": "The learning rate of the epoch's last step.",
    "seconds": "Training time of the epoch (evaluation excluded).",
    "images_per_s": "Training images per second.",
    "threads": "On the CPU: the torch threads the epoch ran with (part of its numbers).",
    "val_loss": "Cross-entropy on the validation images (the test set, or the held-out part with val_split).",
    "val_acc": "Accuracy on the validation images.",
    "eval_seconds": "Time of the evaluation (and precise-BN refresh) after the epoch.",
    "val_acc_class_0 ... val_acc_class_9": "Validation accuracy per class (from the per_class_accuracy callback).",
}


# A tune directory (`mnistres tune`): tune.yaml, the study's storage (unless --storage put it elsewhere), one run
# directory per trial (trial-NNNN), logs/ as a sweep's, and owners/ (one lock per tune process working on it).
TUNE_FILE, STUDY_JOURNAL, OWNERS, TEST_RESULT = "tune.yaml", "study.journal", "owners", "best-on-test.json"
TUNE_FILE_MEANINGS = {
    TUNE_FILE: "The search: the space, the settings every trial shares, sampler, pruner, seed, and where the study "
               "is stored (written once, by the first process; later ones must ask for the same search).",
    STUDY_JOURNAL: "The Optuna study (a journal file), unless --storage named another place.",
    TEST_RESULT: "The best trial's best.pt measured once on the test set (never used to choose).",
    "trial-NNNN/": "One run directory per trial (NNNN: its number in the study), as above; its config.yaml holds "
                   "the chosen settings, and the tune_trial callback that reports to the study.",
    LOGS + "/": "One log per trial and the config handed to its process, as a sweep's.",
    OWNERS + "/": "One lock per tune process working on the study (a trial whose process is gone is taken over).",
    REPORT: "The search's report (`mnistres report DIR`), with its figures beside it.",
    ABOUT: "The search's tags and note, which its trials take on in listings, when it has any.",
}


def trial_name(number: int) -> str:
    """A tune trial's run directory name."""
    return f"trial-{number:04d}"


def trial_number(name: str) -> Optional[int]:
    """The trial a run directory name is (`trial-0007` -> 7), None if it is none."""
    prefix, _, digits = name.partition("-")
    return int(digits) if prefix == "trial" and digits.isdigit() and len(digits) >= 4 else None


def tune_part(name: str) -> bool:
    """Is `name` something a tune directory holds (so that two processes starting one search may meet there)?"""
    return name in (TUNE_FILE, OWNERS, TEST_RESULT, LOGS, LOCK_FILE, ABOUT) or trial_number(name) is not None or \
        name.lstrip(".").startswith((TUNE_FILE, STUDY_JOURNAL))  # a write in progress; the journal's own lock


def is_tune(path: Path) -> bool:
    return (Path(path) / TUNE_FILE).is_file()


def read_tune(path: Path) -> dict[str, Any]:
    """A tune directory's tune.yaml, checked for what every reader relies on."""
    record_path = Path(path) / TUNE_FILE
    record = yamlfile.load(record_path, "tune file")
    problem = "" if isinstance(record, dict) and isinstance(record.get("space"), dict) and \
        isinstance(record.get("base"), dict) and isinstance(record.get("study"), str) else "it lacks space, base or study"
    return _checked(record_path, record, problem, "a tune file")


def write_tune(path: Path, record: Mapping[str, Any]) -> None:
    atomic.write_text(Path(path) / TUNE_FILE, yamlfile.dump(dict(record)))


def point_log(sweep_dir: Path, point: str) -> Path:
    """Where a sweep point's output goes."""
    return Path(sweep_dir) / LOGS / f"{point}.log"


def point_config_file(sweep_dir: Path, point: str) -> Path:
    """The config file a sweep hands to a point's child process (`mnistres train --config`)."""
    return Path(sweep_dir) / LOGS / f"{point}.yaml"


# --- which settings are a result's ----------------------------------------------------------------

# Keys that say where a run is kept...
PLACE_KEYS = ("name", "out_dir")
# ...and how it is executed: they never make two runs different variants, and --resume may change them.
EXECUTION_KEYS = ("device", "threads", "data_dir", "download")
# Of the execution keys, those that change a run's numbers: on the CPU the thread count splits
# reductions differently, so a sweep does not keep a point computed with another one.
NUMERIC_EXECUTION_KEYS = ("threads",)


def is_setting(key: str) -> bool:
    """Does `key` say what was run (and so tell variants apart), rather than where or how?"""
    return key not in PLACE_KEYS and key not in EXECUTION_KEYS


# Settings added after runs were stored: a stored config without one ran as its value here says
# (so that an upgrade neither refuses to resume such a run nor makes a sweep redo it).
# sync_bn: one process is the global batch.
ADDED_SETTINGS: dict[str, Any] = {"sync_bn": True, "ema": 0.0, "rotate": 0.0, "zoom": 0.0, "translate": 0.0,
                                   "elastic": 0.0, "elastic_sigma": 4.0,
                                   "low_res": 0, "low_res_epochs": 0.0, "low_res_mode": "shrink",
                                   "low_res_batch_size": 0}


def with_added(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with the settings it predates at the values it ran with (its own order kept)."""
    return {**config, **{k: v for k, v in ADDED_SETTINGS.items() if k not in config}}


def result_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a result: the config without the keys that do not change its numbers."""
    return {k: v for k, v in with_added(config).items()
            if k not in PLACE_KEYS and (k not in EXECUTION_KEYS or k in NUMERIC_EXECUTION_KEYS)}


# --- reading ----------------------------------------------------------------------------------------
# Run files may come from another machine, another version, or a stranger: everything read here is
# checked for the shape the rest of mnistres relies on.

MAX_JSON_BYTES = 64 << 20  # metrics.jsonl of 10,000 epochs is about 10 MB
STATUSES = runsummary.STATUSES  # summary.json's schema is runsummary's
# Per-epoch keys the report, sweeps and --resume read; accuracies are fractions, the others numbers or null.
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def _text_of(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ConfigError(f"{path} is {size:,} bytes, larger than any run file mnistres writes")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {reason(error)}") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(_text_of(path))
    except (json.JSONDecodeError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise ConfigError(f"cannot read {path}: not JSON ({reason})") from None


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
        if not (is_number(row[key]) and 0 <= row[key] <= 1):
            return f"{key} {echo(row[key])} is not a fraction"
    for key in ("train_loss", "val_loss", "seconds", "lr", "images_per_s", "eval_seconds"):
        if row.get(key) is not None and not is_number(row[key]):
            return f"{key} {echo(row[key])} is not a number"
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
    return _checked(path, summary, runsummary.problem(summary), "a summary")


def read_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml as plain values, checked for shape ({} when there is none)."""
    if not path.is_file():
        return {}
    config = yamlfile.load(path)
    return _checked(path, config, _config_problem(config), "a config")


def is_run(path: Path) -> bool:
    return (path / SUMMARY).is_file()


def is_sweep(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file()


def kind(path: Path) -> str:
    """What a directory is to mnistres: "run", "sweep", "search" (a tune directory), or "" (anything else)."""
    path = Path(path)
    if is_run(path):
        return "run"
    if is_sweep(path):
        return "sweep"
    return "search" if is_tune(path) else ""


MAX_POINTS = 10_000  # points in one sweep; beyond this a sweep is a mistake, not a study
POINT_MESSAGE_LIMIT = 400  # characters of a point's message in sweep.yaml (its summary.json has it whole)
# sweep.yaml at MAX_POINTS, each with a long name and message, is ~6 MB and ~300,000 values: read
# back with room to spare (a person's config file is held to yamlfile's far smaller limits).
SWEEP_FILE_BYTES, SWEEP_FILE_VALUES = 64 << 20, 200 * MAX_POINTS


def read_sweep(path: Path) -> dict[str, Any]:
    """A sweep directory's sweep.yaml, checked: every point names a folder inside the sweep."""
    record_path = path / SWEEP_FILE
    plan = yamlfile.load(record_path, "sweep file", max_bytes=SWEEP_FILE_BYTES, max_values=SWEEP_FILE_VALUES)
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
                isinstance(point.get(k, ""), str) for k in ("status", "message", "host")):
            return f"point {echo(name)} is malformed"
    return ""


def latest_epoch(run_dir: Path) -> Optional[dict[str, Any]]:
    """The last epoch a (possibly running) run has logged, or None when there is none to read yet."""
    try:
        history = read_history(Path(run_dir) / METRICS)
    except MnistresError:
        return None
    return history[-1] if history else None


def stored_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary.json as it is now, checked; {} when there is none to read (yet)."""
    try:
        return read_summary(Path(run_dir) / SUMMARY)
    except MnistresError:
        return {}


def outcome(run_dir: Path, attempt: str) -> Optional[tuple[str, str]]:
    """(status, message) that the attempt `attempt` recorded in the run's summary.json once it ended;
    None while it runs, or if it recorded nothing (an earlier attempt's summary does not count)."""
    summary = stored_summary(run_dir)
    if not summary or summary.get("attempt") != attempt or summary["status"] == "running":
        return None
    return summary["status"], summary.get("message") or ""


def running_on(run_dir: Path, attempt: str) -> Optional[str]:
    """"cpu (...) on host" once the attempt `attempt` has started the run (its summary says so), else None."""
    summary = stored_summary(run_dir)
    if not summary or summary.get("attempt") != attempt:
        return None
    return f"{summary.get('device', '?')} on {summary.get('host', '?')}"


def live_status(run_dir: Path, summary: Mapping[str, Any]) -> tuple[str, str]:
    """(status, note) of a run now, the one rule `runs`, `report` and sweeps' tables share: what its summary
    records, except "running" with nobody holding its lock (its process is gone: killed), which is
    "interrupted", resumable; one whose lock is held on another host cannot be checked from here."""
    from mnistres.core import lock

    status, note = str(summary.get("status", "unknown")), str(summary.get("message") or "")
    if status == "running":
        held = lock.holder_state(Path(run_dir))
        if held == "none":
            return "interrupted", "killed while running (its process is gone)"
        if held == "elsewhere":
            return status, f"on {summary.get('host', 'another host')} (not checked from here)"
    return status, note


def stored_status(run_dir: Path) -> str:
    """The status a run directory's summary.json records ("" when there is none to read)."""
    return stored_summary(run_dir).get("status", "")


# --- writing ----------------------------------------------------------------------------------------


def writer(attempt: str = "") -> dict[str, Any]:
    """Who writes a run, for its summary.json: host and pid, and the attempt that started it, if named."""
    return {"host": socket.gethostname(), "pid": os.getpid(), **({"attempt": attempt} if attempt else {})}


def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    atomic.write_text(Path(run_dir) / CONFIG, yamlfile.dump(dict(config)))


def write_history(run_dir: Path, history: Iterable[Mapping[str, Any]]) -> None:
    """metrics.jsonl, whole: one JSON line per epoch."""
    atomic.write_text(Path(run_dir) / METRICS, "".join(atomic.to_json(row, indent=None) + "\n" for row in history))


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> None:
    atomic.write_json(Path(run_dir) / SUMMARY, summary)


def write_mistakes(run_dir: Path, found: "Mistakes") -> None:
    """mistakes.npz: the arrays of `found`, compressed (NumPy's format, no pickled objects)."""
    import io

    import numpy as np

    from mnistres.runs.mistakes import to_arrays

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **to_arrays(found))
    atomic.write_bytes(Path(run_dir) / MISTAKES, buffer.getbuffer())


def read_mistakes(run_dir: Path) -> Optional["Mistakes"]:
    """A run's mistakes.npz, checked; None when the run has none (not completed, or older than the file)."""
    import zipfile

    import numpy as np

    from mnistres.runs.mistakes import from_arrays

    path = Path(run_dir) / MISTAKES
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found, problem = from_arrays({name: arrays[name] for name in arrays.files})
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ConfigError(f"cannot read {path}: {reason(error) if isinstance(error, OSError) else error}") from None
    return _checked(path, found, problem, "a mistakes file")


def write_sweep(sweep_dir: Path, record: Mapping[str, Any]) -> None:
    text = yamlfile.dump(dict(record))
    if len(text.encode("utf-8")) > SWEEP_FILE_BYTES:  # what mnistres writes it must read back
        raise WriteError(f"cannot write {Path(sweep_dir) / SWEEP_FILE}: {len(text):,} characters, more than "
                         f"a sweep file may hold ({SWEEP_FILE_BYTES:,} bytes); give the axes shorter values")
    atomic.write_text(Path(sweep_dir) / SWEEP_FILE, text)


def record_failure(run_dir: Path, message: str, attempt: str) -> None:
    """summary.json saying `failed` with `message`, for a run that failed before it could say so
    itself (its data, device or plugins would not load). Epochs an earlier attempt completed stay,
    and so does their checkpoint: the run stays resumable. Only the lock's holder may call this."""
    history = []
    try:
        history = read_history(Path(run_dir) / METRICS)
    except MnistresError:
        pass
    write_summary(run_dir, runsummary.Summary(status="failed", message=message, epochs_completed=len(history),
                                              final=history[-1] if history else {}, **writer(attempt)).to_dict())


def output_problem(name: Any) -> str:
    """What makes `name` unusable as a file or folder a callback declares it writes in a run directory
    ("" if nothing): it must be a relative path that stays inside, and not one of the run's own files."""
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        return f"{echo(name)} is not a file name"
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts or parts[0] in (*RUN_FILES, LOCK_FILE, "."):
        return f"{echo(name)} is not a name inside the run directory (relative, without '..', not a file of the run's own)"
    return ""


def clear(run_dir: Path, *, earlier_run: bool, outputs: Iterable[str] = ()) -> None:
    """Before a run writes: remove the temporary files of writes a crash cut short, and with
    `earlier_run` (--overwrite) the earlier run's files too: its own, and those its callbacks wrote
    (the `outputs` its summary.json recorded, and `outputs`, this run's callbacks'). Nothing else in
    the folder is touched. Only the lock's holder may call this."""
    import shutil

    run_dir = Path(run_dir)
    atomic.remove_leftovers(run_dir, RUN_FILES)
    if not earlier_run:
        return
    recorded = stored_summary(run_dir).get("outputs") or []
    for name in sorted({*recorded, *outputs}):
        if output_problem(name):
            continue  # never a path that leads outside the run directory, whatever a summary says
        path = run_dir / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif os.path.lexists(path):
                path.unlink()
        except OSError as error:
            raise WriteError(f"cannot remove the earlier run's {path}: {reason(error)}") from None
    for name in (*RUN_FILES, ABOUT):  # the earlier run's tags and note were about it
        (run_dir / name).unlink(missing_ok=True)


# --- what may be done with a directory ---------------------------------------------------------------

FINISHED = ("completed", "diverged", "pruned")  # a sweep point or tune trial with one of these is a result, not run again
# A run that stopped part-way with a checkpoint: Ctrl-C or SIGTERM, a failure (a full disk, a worker that
# lost its data), or a kill that left it "running" with nobody holding its lock.
UNFINISHED = ("interrupted", "failed", "running")


def resume_hint(run_dir: Path) -> str:
    """What the user can do after an interruption or a failed write."""
    if (run_dir / LAST).is_file():
        return f"`mnistres train --resume {run_dir}` continues it from its last completed epoch"
    return "no epoch had finished; run the same command with --overwrite to start it again"


def refuse_earlier_run(run_dir: Path) -> None:
    """A new run never mixes its files with an earlier run's: say what is there and what to do."""
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not existing:
        return
    status = stored_status(run_dir)
    how = {"interrupted": "it was interrupted", "failed": "it failed",
           "running": "it stopped while running (killed, or its machine went away)"}.get(status, "")
    if how and (run_dir / LAST).is_file():
        offer = f"{how}: `mnistres train --resume {run_dir}` continues it, --overwrite starts it again"
    elif how:
        offer = f"{how} before its first epoch ended, so there is nothing to resume: --overwrite starts it again"
    else:
        offer = "pass --overwrite to replace it"
    shown = "an unfinished" if status == "running" else article(status)
    raise ConfigError(f"{run_dir} already holds {shown} run ({', '.join(existing)}); {offer}, "
                      f"or choose another --name")


def earlier_status(run_dir: Path, config: Mapping[str, Any]) -> Optional[str]:
    """The status of an earlier run of these very settings in `run_dir`, if any."""
    try:
        summary = read_summary(run_dir / SUMMARY)
        stored = read_config(run_dir / CONFIG)
    except MnistresError:
        return None
    return summary.get("status") if result_settings(stored) == result_settings(config) else None


def kept_status(run_dir: Path, config: Mapping[str, Any]) -> Optional[str]:
    """The status of an earlier run of `config` in `run_dir`, if it is a result a sweep keeps."""
    status = earlier_status(run_dir, config)
    return status if status in FINISHED else None
