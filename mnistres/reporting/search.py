"""The report's part for a search (a tune directory): the best trials, the best one on the test set, and
the search's figures (optimisation history, parameter importances, parallel coordinates).

Read from the trials' run directories and tune.yaml only, like the rest of the report; Optuna (if it is
installed) only computes the importances, on a study rebuilt in memory from those files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Optional

from mnistres.core.display import markdown_table as _table
from mnistres.core.values import brief, text
from mnistres.core.wording import plural
from mnistres.runs import rundir
from mnistres.runs.results import BEST_SHOWN, Run, Study, Trial, rank, space_distributions

MIN_FOR_IMPORTANCE = 8  # completed trials below which importances say nothing worth a figure
TOP_QUANTILE = 0.25  # importances say what decides whether a trial is among this best fraction


def best_trial(study: Study) -> Optional[Trial]:
    """The completed trial with the best held-out accuracy (the earliest of equals), as the search chose it."""
    done = [t for t in study.trials if t.value is not None and t.run.status in ("completed", "diverged")]
    return min(done, key=lambda t: rank(t.value, t.number)) if done else None


def best_run(study: Study) -> Optional[Run]:
    best = best_trial(study)
    return best.run if best is not None and best.run.summary.get("confusion_matrix") else None


def test_result(study: Study) -> Optional[dict[str, Any]]:
    """best-on-test.json, if it is there and readable."""
    path = Path(study.path or ".") / rundir.TEST_RESULT
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and isinstance(result.get("test_acc"), (int, float)) else None


def importances(study: Study) -> tuple[Optional[dict[str, float]], str]:
    """PED-ANOVA importances of the searched keys for the held-out accuracy, or None and why not."""
    space = study.tune["space"] if study.tune else {}
    done = [t for t in study.trials if t.value is not None and t.run.status == "completed"]
    if len(space) < 2:
        return None, "one key was searched: nothing to compare its importance with"
    if len(done) < MIN_FOR_IMPORTANCE:
        return None, f"they need at least {MIN_FOR_IMPORTANCE} completed trials"
    try:
        import optuna
    except ImportError:
        return None, 'they are computed by Optuna: pip install "mnistres[tune]"'
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = space_distributions(space)
    rebuilt = optuna.create_study(direction="maximize")
    for trial in done:
        params = {key: text(value) if "choices" in space[key] else value for key, value in trial.params.items()}
        try:
            rebuilt.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=trial.value))
        except ValueError:  # a value outside the space (a hand-edited config): left out
            continue
    try:  # PED-ANOVA: NumPy alone (fANOVA would need scikit-learn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental", and its note on few trials: said in the report instead
            evaluator = optuna.importance.PedAnovaImportanceEvaluator
            try:
                chosen = evaluator(target_quantile=TOP_QUANTILE)
            except TypeError:  # its older name (Optuna 4.0 has only this one)
                chosen = evaluator(baseline_quantile=TOP_QUANTILE)
            found = optuna.importance.get_param_importances(rebuilt, evaluator=chosen)
    except (ImportError, RuntimeError, ValueError) as error:
        return None, f"{type(error).__name__}: {error}"
    return {key: float(value) for key, value in found.items()}, ""


def section(study: Study, output: Path, stem: str, figures: list[Path], h: str) -> list[str]:
    """The search: its settings and counts, the best trials, the test-set figure, and three figures."""
    from mnistres.reporting import figures as figures_module

    record = study.tune or {}
    trials = study.trials
    space = record.get("space", {})
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.run.status] = counts.get(trial.run.status, 0) + 1
    pruner = record.get("pruner", {})
    pruner_text = pruner.get("name", "?") + (" (" + ", ".join(f"{k} {v}" for k, v in pruner.items() if k != "name")
                                             + ")" if len(pruner) > 1 else "")
    val_split = (record.get("base") or {}).get("val_split")
    lines = [f"{h} The search", "",
             f"{plural(len(trials), 'trial')} ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); sampler "
             f"{record.get('sampler', '?')}, seed {record.get('seed', '?')}; pruner {pruner_text}; study "
             f"`{record.get('study', '?')}`. Each trial is scored by its best epoch's accuracy on the held-out "
             f"{_percent(val_split)} of the training set; the test set is not used to choose.", "",
             "Searched: " + "; ".join(_space_text(key, spec) for key, spec in space.items()) + ".", ""]
    keys = list(space)
    ranked = sorted((t for t in trials if t.value is not None and t.run.status in ("completed", "diverged")),
                    key=lambda t: rank(t.value, t.number))[:BEST_SHOWN]
    if ranked:
        rows = [[t.run.name, f"{100 * t.value:.2f}", *(brief(k, t.params.get(k)) for k in keys)] for t in ranked]
        lines += [f"{h} Best trials", ""] + _table(["trial", "held-out acc (%)", *keys], rows)
    test = test_result(study)
    best = best_trial(study)
    if test is not None and best is not None and test.get("trial") == best.number:
        lines += [f"The best trial's `best.pt` (epoch {test.get('epoch')}) on the {test.get('test_images', 0):,} test "
                  f"images, measured once after the search: **{100 * test['test_acc']:.2f} %** (held-out "
                  f"{100 * best.value:.2f} %).", ""]
    elif best is not None:
        lines += ["The best trial has not been measured on the test set yet (the search measures it as it ends).", ""]
    history = output.with_name(f"{stem}-history.png")
    figures_module.plot_history(trials, history)
    figures.append(history)
    lines += [f"{h} Optimisation history", "", f"![Held-out accuracy by trial]({history.name})", ""]
    found, why = importances(study)
    lines += [f"{h} Parameter importances", ""]
    if found:
        chart = output.with_name(f"{stem}-importances.png")
        figures_module.plot_importances(found, chart)
        figures.append(chart)
        lines += [f"![Parameter importances]({chart.name})", "",
                  f"PED-ANOVA over the completed trials (Optuna's evaluator): how much each key decides whether a "
                  f"trial is among the best {TOP_QUANTILE:.0%} of them, in shares that add up to 1. With few "
                  f"trials, a rough guide.", ""]
    else:
        lines += [f"Not computed: {why}.", ""]
    parallel = output.with_name(f"{stem}-parallel.png")
    figures_module.plot_parallel(trials, space, parallel)
    figures.append(parallel)
    lines += [f"{h} Parallel coordinates", "", f"![Trials across the searched keys]({parallel.name})", ""]
    if best is not None and best.run.summary.get("per_class"):
        rows = [[str(row["class"]), f"{100 * row['accuracy']:.2f}" if row.get("accuracy") is not None else ""]
                for row in best.run.summary["per_class"]]
        lines += [f"{h} Per-class held-out accuracy of the best trial (`{best.run.name}`, final epoch, %)", ""] \
            + _table(["class", "accuracy"], rows)
    return lines


def _space_text(key: str, spec: dict[str, Any]) -> str:
    if "choices" in spec:
        return f"{key} from {', '.join(text(c) for c in spec['choices'])}"
    scale = ", log scale" if spec.get("log") else ""
    step = f", step {text(spec['step'])}" if spec.get("step") not in (None, 1) else ""
    return f"{key} from {text(spec['low'])} to {text(spec['high'])}{scale}{step}"


def _percent(fraction: Any) -> str:
    return f"{100 * fraction:g} %" if isinstance(fraction, (int, float)) else "part"
