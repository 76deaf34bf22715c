"""Published figures to put beside a study's runs (`mnistres report --reference FILE`).

A reference file (YAML) holds, per variant, the settings that pick it out of a study and the
accuracies its source gives: after the first epoch, after the last, the best. `examples/reference/
course-report.yaml` holds the course report's. Read and checked once here; `report` only asks
which entry matches a variant and how our runs compare with it. No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mnistres.runs import rundir
from mnistres.core import yamlfile
from mnistres.config import KEYS, coerce
from mnistres.errors import ConfigError
from mnistres.core.values import echo, text
from mnistres.core.wording import did_you_mean

METRICS = ("train_acc", "val_acc")  # the curves a reference may give figures for
POINTS = ("first", "final", "best")  # after epoch 1, after the last epoch, the highest named


@dataclass
class Entry:
    """One variant of the reference: the settings that select it and its figures (fractions)."""

    values: dict[str, Any]
    section: str
    figures: dict[str, dict[str, float]]  # metric -> point -> value, only what the source gives
    note: str = ""

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={text(value)}" for key, value in self.values.items())

    def figure(self, metric: str, point: str) -> Optional[float]:
        return self.figures.get(metric, {}).get(point)


@dataclass
class Reference:
    title: str  # e.g. "the course report"
    source: str  # where the figures come from, e.g. "course report, section 3"
    path: Path
    entries: list[Entry] = field(default_factory=list)
    # How the source trained every variant beyond the entry's values (`epochs: 10`): a run set up otherwise
    # is not compared like with like, and the report says so.
    setup: dict[str, Any] = field(default_factory=dict)

    def match(self, values: dict[str, Any]) -> Optional[Entry]:
        """The entry whose every setting a variant has, with the same value (`values`: the variant's
        varied settings). None when no entry, or more than one, fits."""
        fitting = [entry for entry in self.entries
                   if all(key in values and text(values[key]) == text(value) for key, value in entry.values.items())]
        return fitting[0] if len(fitting) == 1 else None

    def unlike(self, configs: list[dict[str, Any]], varied: list[str]) -> list[tuple[str, list[str], str]]:
        """The setup keys (not varied in the study) where runs with these `configs` differ from the source:
        (key, our values as typed, the source's value)."""
        found = []
        # A setting an older run's config.yaml lacks ran at the value rundir.with_added gives it.
        filled = [rundir.with_added(config) for config in configs]
        for key, theirs in self.setup.items():
            if key in varied:
                continue
            distinct = {text(config.get(key)): config.get(key) for config in filled}
            ours = sorted(distinct, key=lambda shown: _in_order(distinct[shown]))
            if ours and ours != [text(theirs)]:
                found.append((key, ours, text(theirs)))
        return found


def _in_order(value: Any) -> tuple:
    """Sort key: numbers by size (2 before 10), then anything else by its text."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if number else (1, 0, text(value))


def load(path: str | Path) -> Reference:
    """The reference in `path`, checked: a ConfigError naming the file and the problem otherwise."""
    path = Path(path)
    document = yamlfile.load(path, "reference file")

    def bad(problem: str) -> ConfigError:
        return ConfigError(f"reference file {path}: {problem}")

    if not isinstance(document, dict):
        raise bad("expected a mapping with title, source and variants")
    unknown = sorted(set(document) - {"title", "source", "variants", "setup"})
    if unknown:
        raise bad(f"unknown key {echo(unknown[0])} (expected title, source, setup, variants)")
    title, source, variants = document.get("title"), document.get("source"), document.get("variants")
    for key, value in (("title", title), ("source", source)):
        if not isinstance(value, str) or not value.strip():
            raise bad(f"{key} must be a non-empty text")
    if not isinstance(variants, list) or not variants:
        raise bad("variants must be a non-empty list")
    setup = document.get("setup") or {}
    if not isinstance(setup, dict) or not all(isinstance(key, str) for key in setup):
        raise bad("setup must map setting names to values, e.g. {epochs: 10}")
    _check_settings(setup, "setup", bad)
    try:
        setup = {key: coerce(key, value) for key, value in setup.items()}  # typed as a run records it
    except ConfigError as error:
        raise bad(f"setup: {error}") from None
    reference = Reference(title.strip(), source.strip(), path, setup=setup)
    for number, item in enumerate(variants, start=1):
        reference.entries.append(_entry(item, f"variant {number}", bad))
    labels = [entry.label for entry in reference.entries]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice is not None:
        raise bad(f"two variants with the same settings ({twice})")
    return reference


def _check_settings(keys: Any, where: str, bad: Any) -> None:
    """Every key a setting of RunConfig (the keys `config.KEYS` lists), else `bad` naming it and the closest."""
    for key in keys:
        if key not in KEYS:
            raise bad(f"{where}: {echo(key)} is not a setting (a key of RunConfig){did_you_mean(key, KEYS)}")


def _entry(item: Any, where: str, bad: Any) -> Entry:
    if not isinstance(item, dict):
        raise bad(f"{where} must be a mapping")
    unknown = sorted(set(item) - {"values", "section", "note", *METRICS})
    if unknown:
        raise bad(f"{where}: unknown key {echo(unknown[0])} (expected values, section, note, {', '.join(METRICS)})")
    values = item.get("values")
    if not isinstance(values, dict) or not values or not all(isinstance(key, str) for key in values):
        raise bad(f"{where}: values must map setting names to values, e.g. {{activation: relu}}")
    _check_settings(values, where, bad)
    figures: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        given = item.get(metric)
        if given is None:
            continue
        if not isinstance(given, dict) or not given:
            raise bad(f"{where}: {metric} must map first/final/best to accuracies")
        for point, value in given.items():
            if point not in POINTS:
                raise bad(f"{where}: {metric}.{echo(point)} is not one of {', '.join(POINTS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 <= value <= 1:
                raise bad(f"{where}: {metric}.{point}={echo(value)} must be an accuracy between 0 and 1")
        figures[metric] = {point: float(value) for point, value in given.items()}
    section, note = item.get("section", ""), item.get("note", "")
    if not isinstance(section, (str, int, float)) or not isinstance(note, str):
        raise bad(f"{where}: section and note must be texts")
    if not figures and not note:
        raise bad(f"{where}: no figures and no note saying why")
    return Entry(dict(values), str(section), figures, note.strip())
