"""Named, self-describing building blocks: activations, optimizers, schedulers, callbacks.

Every entry, built-in or third-party, arrives the same way: a module listed under the
entry-point group ``mnistres.plugins`` is imported, and its decorators register entries:

    from mnistres.registry import activations

    @activations.register("mish", help="x * tanh(softplus(x))")
    def mish():
        import torch.nn as nn
        return nn.Mish()

An entry may accept options, declared with their defaults; users pass them in a spec
such as ``sgd:momentum=0.9,nesterov=true``. Plugins load once, lazily, on the first
look-up, so ``--help`` never pays for them.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterator, Mapping

from mnistres import values
from mnistres.errors import ConfigError, UnknownNameError

ENTRY_POINT_GROUP = "mnistres.plugins"
BUILT_IN = "built-in"


@dataclass(frozen=True)
class Entry:
    """One registered name: what it builds, what it is for, and what it accepts."""

    name: str
    factory: Callable[..., Any]
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # option name -> default
    source: str = BUILT_IN  # "built-in", "<distribution> <version>" or a module name

    def build(self, *args: Any, options: Mapping[str, Any] | None = None, **context: Any) -> Any:
        """Call the factory with the declared defaults, overridden by `options`."""
        merged = {**self.options, **(options or {})}
        return self.factory(*args, **context, **merged)


@dataclass(frozen=True)
class Spec:
    """A parsed ``name:key=value,...`` string: an entry name and its chosen options."""

    name: str
    options: Mapping[str, Any]

    def __str__(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format(v)}" for k, v in self.options.items())


class Registry:
    """A table of entries of one kind, filled by plugins (built-ins included)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # singular noun used in messages: "activation", "optimizer", ...
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, help: str, options: Mapping[str, Any] | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register `factory` under `name` with its help line and options."""
        key = normalise(name)

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            source = _source_of(factory)
            if key in self._entries:
                first = self._entries[key].source
                raise ConfigError(
                    f"{self.kind} '{key}' is registered twice: by {first} and by {source}"
                )
            self._entries[key] = Entry(key, factory, help.strip(), dict(options or {}), source)
            return factory

        return decorator

    def get(self, name: str) -> Entry:
        load_plugins()
        key = normalise(name)
        try:
            return self._entries[key]
        except KeyError:
            raise UnknownNameError(self._unknown_message(key)) from None

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        load_plugins()
        return [self._entries[name] for name in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return normalise(name) in self._entries

    def parse(self, spec: str) -> Spec:
        """Parse and check ``name[:key=value,...]`` against what the entry accepts."""
        name, _, option_text = str(spec).partition(":")
        entry = self.get(name)
        chosen: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in option_text.split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep:
                raise ConfigError(f"{self.kind} option '{item}' in '{spec}' must look like key=value")
            if key not in entry.options:
                accepted = ", ".join(entry.options) or "no options"
                raise ConfigError(
                    f"{self.kind} '{entry.name}' has no option '{key}' (it accepts: {accepted})"
                )
            try:
                chosen[key] = values.like(entry.options[key], raw)
            except values.ValueProblem as problem:
                raise ConfigError(
                    f"{self.kind} '{entry.name}' option {key}={raw!r}: {problem}"
                ) from None
        return Spec(entry.name, chosen)

    def build(self, spec: str | Spec, *args: Any, **context: Any) -> Any:
        """Build the entry a spec names, passing `context` and the spec's options."""
        parsed = spec if isinstance(spec, Spec) else self.parse(spec)
        return self.get(parsed.name).build(*args, options=parsed.options, **context)

    def _unknown_message(self, key: str) -> str:
        available = sorted(self._entries)
        message = f"unknown {self.kind} '{key}'"
        close = difflib.get_close_matches(key, available, n=1, cutoff=0.5)
        if close:
            message += f"; did you mean '{close[0]}'?"
        listing = ", ".join(available) if available else "none (no plugins loaded)"
        return f"{message} Available: {listing}"


def normalise(name: str) -> str:
    """Names are case-insensitive and '-' equals '_' (`leaky-relu` is `leaky_relu`)."""
    return str(name).strip().lower().replace("-", "_")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


activations = Registry("activation")
optimizers = Registry("optimizer")
schedulers = Registry("scheduler")
callbacks = Registry("callback")

REGISTRIES: dict[str, Registry] = {
    "activations": activations,
    "optimizers": optimizers,
    "schedulers": schedulers,
    "callbacks": callbacks,
}

# --- plugin loading -------------------------------------------------------------------

_loaded = False
_loading_source: str | None = None
failed_plugins: list[tuple[str, str]] = []  # (plugin name, error) of plugins that did not load


def _source_of(factory: Callable[..., Any]) -> str:
    if _loading_source is not None:
        return _loading_source
    module = getattr(factory, "__module__", "") or ""
    return BUILT_IN if module == "mnistres" or module.startswith("mnistres.") else module


@contextmanager
def _registering_as(source: str) -> Iterator[None]:
    global _loading_source
    previous, _loading_source = _loading_source, source
    try:
        yield
    finally:
        _loading_source = previous


def load_plugins() -> None:
    """Import every module of the ``mnistres.plugins`` entry-point group, once.

    A plugin that fails to import is reported on stderr and skipped: one broken
    package must not take the tool down.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_builtins_first):
        dist = entry_point.dist
        if dist is None or dist.metadata["Name"] == "mnistres":
            source = BUILT_IN
        else:
            source = f"{dist.metadata['Name']} {dist.version}"
        try:
            with _registering_as(source):
                importlib.import_module(entry_point.value.split(":")[0])
        except Exception as error:  # noqa: BLE001 - any plugin error is isolated
            failed_plugins.append((entry_point.name, f"{type(error).__name__}: {error}"))
            print(
                f"mnistres: plugin '{entry_point.name}' ({source}) failed to load and was skipped: "
                f"{type(error).__name__}: {error}",
                file=sys.stderr,
            )


def _builtins_first(entry_point: metadata.EntryPoint) -> tuple[int, str]:
    dist = entry_point.dist
    is_builtin = dist is not None and dist.metadata["Name"] == "mnistres"
    return (0 if is_builtin else 1, entry_point.name)
