"""A search space (SPACE.yaml): which RunConfig keys `mnistres tune` chooses, and from what.

Each key of the file is a RunConfig key, written one of three ways:

    lr: {low: 1.0e-4, high: 0.3, log: true}       # a range (numbers; ints may take `step`)
    optimizer: [adam, "sgd:momentum=0.9"]         # choices (registry names with their options allowed)
    epochs: 4                                      # fixed, as in a config file

Everything is checked here, once, before a trial runs: an unknown key, an empty or upside-down range,
a value the key refuses, a name no registry has. No Optuna here (`to_distributions` imports it).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from mnistres import config as config_module
from mnistres.config import RunConfig
from mnistres.core.values import ValueProblem, echo, text, to_bool
from mnistres.errors import ConfigError
from mnistres.resolve import canonical, meaning, resolve
from mnistres.runs import rundir
from mnistres.runs.results import space_distributions

RANGE_KEYS = ("low", "high", "log", "step")  # what a range's mapping may hold
MAX_CHOICES = 1000  # beyond this a list of choices is a mistake, not a search


@dataclass(frozen=True)
class Param:
    """One searched key: a range (`low`, `high`, `log`, `step`) or a list of `choices`."""

    key: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None  # a range's grid (ints: 1 unless given); None: continuous
    choices: Optional[tuple[Any, ...]] = None  # typed values, as the key takes them

    @property
    def is_range(self) -> bool:
        return self.choices is None

    def record(self) -> dict[str, Any]:
        """As the tune record and the study keep it (plain YAML/JSON values)."""
        if self.choices is not None:
            return {"choices": [text(c) if isinstance(c, tuple) else c for c in self.choices]}
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {}),
                **({"step": self.step} if self.step is not None else {})}

    def grid(self) -> Optional[list[Any]]:
        """Every value, where there are finitely many (choices, or a range with a step); None otherwise."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None or self.log:
            return None
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if isinstance(self.low, int) else [round(v, 12) for v in values]


@dataclass(frozen=True)
class Space:
    params: dict[str, Param]  # key -> what the search chooses from (the file's plain keys are a config layer)

    def record(self) -> dict[str, Any]:
        return {key: param.record() for key, param in self.params.items()}


def _kind(key: str) -> Any:
    """The field's type, Optional unwrapped: int, float, bool, str, or a tuple type."""
    kind = typing.get_type_hints(RunConfig)[key]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def load(path: str | Path) -> tuple[dict[str, dict[str, Any] | list[Any]], dict[str, Any]]:
    """The file split into (searched keys as written, fixed keys); keys checked, values not yet."""
    data = config_module.load_yaml(path)
    searched: dict[str, Any] = {}
    fixed: dict[str, Any] = {}
    for raw, value in data.items():
        if raw == "preset":  # a config file's own key: a layer, like theirs
            fixed[raw] = value
            continue
        key = config_module.check_key(raw, str(path))
        if key in searched or key in fixed:
            raise ConfigError(f"{path}: {key} is given twice")
        is_list_key = typing.get_origin(_kind(key)) is tuple
        choices = isinstance(value, list) and (not is_list_key or any(isinstance(v, list) for v in value))
        if isinstance(value, dict) or choices:
            searched[key] = value
        else:
            fixed[key] = value
    return searched, fixed


def check(searched: Mapping[str, Any], base: RunConfig, origin: str) -> Space:
    """Each searched key made a `Param`, every bound and choice tried on `base` (the settings every
    trial shares) the way a run would check it; `base`'s own values for them are what the trials replace."""
    params: dict[str, Param] = {}
    for key, written in searched.items():
        where = f"{origin}: {key}"
        if key in rundir.PLACE_KEYS or key in rundir.EXECUTION_KEYS:
            raise ConfigError(f"{where} cannot be searched: it says where or how a trial runs, not what it is "
                              f"(give it as a plain value, or as an option)")
        if typing.get_origin(_kind(key)) is tuple:
            raise ConfigError(f"{where}: a list of {key} is one setting and cannot be searched; give it as a plain list")
        params[key] = _choices(key, written, base, where) if isinstance(written, list) else \
            _range(key, written, base, where)
    if not params:
        raise ConfigError(f"{origin} searches nothing: give at least one key a range ({{low: ..., high: ...}}) "
                          f"or a list of choices")
    return Space(params)


def _try(key: str, value: Any, base: RunConfig, where: str) -> Any:
    """`value` typed for `key` and checked as a run would check it (names looked up in their registry)."""
    try:
        typed = canonical(key, config_module.coerce(key, value))
        resolve(base.replace(**{key: typed}))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}", key=key) from None
    return typed


def _choices(key: str, written: list[Any], base: RunConfig, where: str) -> Param:
    if not written:
        raise ConfigError(f"{where} has no choices")
    if len(written) > MAX_CHOICES:
        raise ConfigError(f"{where} has {len(written):,} choices; at most {MAX_CHOICES:,}")
    if any(isinstance(v, (dict, list)) for v in written):
        raise ConfigError(f"{where}: each choice is one value, found {echo(next(v for v in written if isinstance(v, (dict, list))))}")
    typed = [_try(key, value, base, where) for value in written]
    meanings = [meaning(key, value) for value in typed]
    repeated = sorted({text(v) for v, m in zip(typed, meanings) if meanings.count(m) > 1})
    if repeated:
        raise ConfigError(f"{where} lists the same setting more than once ({', '.join(repeated)})")
    return Param(key, choices=tuple(typed))


def _range(key: str, written: dict[str, Any], base: RunConfig, where: str) -> Param:
    kind = _kind(key)
    if kind not in (int, float) or kind is bool:
        raise ConfigError(f"{where}: only numbers have ranges; give {key} a list of choices, e.g. "
                          f"{key}: [{config_module.example_of(key) or text(getattr(base, key))}]")
    unknown = sorted(set(map(str, written)) - set(RANGE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: a range takes {', '.join(RANGE_KEYS)}, not {', '.join(unknown)}")
    if "low" not in written or "high" not in written:
        raise ConfigError(f"{where}: a range needs low and high, e.g. {key}: {{low: 1, high: 10}}")
    low, high = (_try(key, written[bound], base, f"{where} {bound}") for bound in ("low", "high"))
    if low is None or high is None:
        raise ConfigError(f"{where}: low and high must be numbers")
    if low >= high:
        raise ConfigError(f"{where}: low {text(low)} must be below high {text(high)}")
    try:
        log = to_bool(written.get("log", False))
    except ValueProblem:
        raise ConfigError(f"{where}: log must be true or false, got {echo(written.get('log'))}") from None
    step = written.get("step")
    if step is not None:
        try:
            step = config_module.coerce(key, step)
        except ConfigError:
            raise ConfigError(f"{where}: step must be a number, got {echo(step)}") from None
        if not step > 0 or step > high - low:
            raise ConfigError(f"{where}: step {text(step)} must be above 0 and at most high - low ({text(high - low)})")
        if log and kind is float:
            raise ConfigError(f"{where}: a log range takes no step")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low above 0, got {text(low)}")
    if kind is int and step is None:
        step = 1
    if kind is int and log and step != 1:
        raise ConfigError(f"{where}: an int log range steps by 1")
    return Param(key, low=low, high=high, log=log, step=step)


def to_distributions(space: Space) -> dict[str, Any]:
    """The space as Optuna distributions (choices as text, what Optuna stores; `typed` types them back)."""
    return space_distributions(space.record())


def typed(space: Space, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The values Optuna chose for the space's keys, typed as RunConfig takes them."""
    return {key: canonical(key, config_module.coerce(key, chosen[key])) for key in space.params if key in chosen}
