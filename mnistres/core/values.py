"""Turning text from the command line or YAML into typed values, with errors that say what was expected,
and typed values back into the text a user would type.

Both RunConfig fields and registry options go through here, so `--set lr=1e-3`,
`lr: 1e-3` in YAML and `sgd:momentum=0.9` all read numbers the same way. Every number
must be finite and fit in 64 bits: NaN, infinities and 10**100 are mistakes, never settings.
"""

from __future__ import annotations

import math
import re
from typing import Any

INT_LIMIT = 2**63 - 1  # what torch and numpy hold in an int64
ECHO_LIMIT = 60  # characters of a user's value that an error message repeats

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~"}


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
    number = _whole(value)
    if abs(number) > INT_LIMIT:
        raise ValueProblem(f"expected a whole number of at most {INT_LIMIT:,} in size")
    return number


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueProblem("expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= 100:  # int() of a 100,000-digit text takes its time
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
    number = _number(value)
    if not math.isfinite(number):
        raise ValueProblem("expected a finite number")
    return number


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueProblem("expected a number")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int beyond float's range
            return math.inf
    if isinstance(value, str) and len(value) <= 100:
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueProblem("expected a number")


def to_str(value: Any) -> str:
    if isinstance(value, str):
        if not value.strip():
            raise ValueProblem("expected a value, got empty text (write none to leave it unset)")
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueProblem("expected text")


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool: what a number read from a run's JSON files must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_none(value: Any) -> bool:
    """None, or text that means it ("none", "null", "~"). Empty text is not "none": `--name ''` is a mistake."""
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


def text(value: Any) -> str:
    """A value as a user would type it: true/false, none, 0.001, a,b for lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(text(item) for item in value)
    return repr(value) if isinstance(value, float) else str(value)


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)` for an error message, at most `limit` characters: a message must never repeat a
    megabyte that a user (or an attacker) typed, nor walk a YAML list that expands to billions of items."""
    import reprlib

    shorter = reprlib.Repr()
    shorter.maxlevel, shorter.maxlist, shorter.maxtuple, shorter.maxdict = 2, 6, 6, 6
    shorter.maxstring = shorter.maxother = shorter.maxlong = limit
    shown = shorter.repr(value)
    if len(shown) <= limit:
        return shown
    return shown[: limit - 1] + "…"


def clip(text: str, limit: int = 300) -> str:
    """Text from elsewhere (an exception, a log) as one line of at most `limit` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# What a setting left unset means, as a table shows it (`text` gives `none`, which is what a user types).
UNSET_MEANS = {"train_size": "all", "momentum": "default", "weight_decay": "default", "data_dir": "default",
               "name": "generated"}


def shown(key: str, value: Any) -> str:
    """A setting's value as a table or report shows it to a reader: `train_size all`, `momentum default`
    where `text` writes `none`; otherwise as a user would type it."""
    if value is None and key in UNSET_MEANS:
        return UNSET_MEANS[key]
    return text(value)


def brief(key: str, value: Any) -> str:
    """A chosen value in a narrow column: floats to 4 significant digits, the rest as `shown`."""
    return f"{value:.4g}" if isinstance(value, float) else shown(key, value)


# Characters that must not reach a terminal as they are: C0/C1 controls (a newline in a path would start
# a fake line of output, an escape sequence would drive the terminal) and the bidirectional controls that
# make text display in another order than it reads (a right-to-left override in a file name).
_UNPRINTABLE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROLS = {True: re.compile(f"[{_UNPRINTABLE}]"), False: re.compile(f"[{_UNPRINTABLE}\n]")}


def printable(value: str, *, newlines: bool = False) -> str:
    """`value` with every control and bidi character written as its escape (`\\n`, `\\u202e`); tabs stay,
    and newlines too with `newlines` (text of several lines that mnistres wrote itself)."""
    return _CONTROLS[newlines].sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), value)
