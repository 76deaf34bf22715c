"""Turning text from the command line or YAML into typed values, with errors that say what was expected.

Both RunConfig fields and registry options go through here, so `--set lr=1e-3`,
`lr: 1e-3` in YAML and `sgd:momentum=0.9` all read numbers the same way.
"""

from __future__ import annotations

from typing import Any

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


class ValueProblem(ValueError):
    """A value that does not fit; the message says what would."""


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueProblem("expected true or false")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueProblem("expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
            else:
                if number.is_integer():
                    return int(number)
    raise ValueProblem("expected a whole number")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueProblem("expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueProblem("expected a number")


def to_str(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueProblem("expected text")


def is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def like(default: Any, value: Any) -> Any:
    """Coerce `value` to the type of `default` (a registry option's default)."""
    if isinstance(default, bool):
        return to_bool(value)
    if isinstance(default, int):
        return to_int(value)
    if isinstance(default, float):
        return to_float(value)
    if isinstance(default, str):
        return to_str(value)
    return value
