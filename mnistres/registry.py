"""Named, self-describing building blocks: activations, optimizers, schedulers, callbacks, presets, executors, datasets.

Every entry, built-in or third-party, arrives the same way: a module listed under the
entry-point group ``mnistres.plugins`` is imported, and its decorators register entries:

    from mnistres.registry import activations

    @activations.register("mish", help="x * tanh(softplus(x))")
    def mish():
        import torch.nn as nn
        return nn.Mish()

An entry may accept options, declared with their defaults (and, with `Option`, the range or
choices they accept); users pass them in a spec such as ``sgd:momentum=0.9,nesterov=true``,
checked when the spec is parsed, before any work. Plugins load once, lazily, on the first
look-up, so ``--help`` never pays for them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from mnistres.core import values, wording
from mnistres.errors import ConfigError, MnistresError, PluginError, UnknownNameError

ENTRY_POINT_GROUP = "mnistres.plugins"
BUILT_IN = "built-in"


@dataclass(frozen=True)
class Option:
    """An option's default and the values it accepts beyond its type.

    Numbers are always finite and fit in 64 bits; `low`/`high` bound them further (inclusive
    unless `low_open`/`high_open`), `choices` lists the only texts allowed:

        options={"momentum": Option(0.0, low=0, high=1), "mode": Option("auto", choices=("auto", "min", "max"))}
    """

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is not allowed: 0 < x rather than 0 <= x
    high_open: bool = False
    choices: tuple[Any, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why `value` is not accepted, or None."""
        if self.choices and value not in self.choices:
            hint = wording.did_you_mean(str(value), map(str, self.choices))
            return f"expected one of {', '.join(map(str, self.choices))}{hint}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if too_low or too_high:
                return f"expected {self.describe()}"
        return None

    def describe(self) -> str:
        """The accepted values in a few characters: `>= 0`, `0 to 1`, `0 <= x < 1`, `a | b`; "" when only
        the type counts."""
        if self.choices:
            return " | ".join(map(str, self.choices))
        low = None if self.low is None else (f"{self.low:g}", "<" if self.low_open else "<=")
        high = None if self.high is None else (f"{self.high:g}", "<" if self.high_open else "<=")
        if low and high:
            if low[1] == high[1] == "<=":
                return f"{low[0]} to {high[0]}"
            return f"{low[0]} {low[1]} x {high[1]} {high[0]}"
        if low:
            return f"{'>' if self.low_open else '>='} {low[0]}"
        if high:
            return f"{high[1]} {high[0]}"
        return ""


@dataclass(frozen=True)
class Entry:
    """One registered name: what it builds, what it is for, and what it accepts."""

    name: str
    factory: Callable[..., Any]
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # option name -> default
    source: str = BUILT_IN  # "built-in", "<distribution> <version>" or a module name
    limits: Mapping[str, Option] = field(default_factory=dict)  # option name -> what it accepts, where declared

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
        # Options as users write them (`true`, not `True`), which parse back to the same values.
        return self.name + ":" + ",".join(f"{k}={values.text(v)}" for k, v in self.options.items())


class Registry:
    """A table of entries of one kind, filled by plugins (built-ins included)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # singular noun used in messages: "activation", "optimizer", ...
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, help: str, options: Mapping[str, Any] | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register `factory` under `name` with its help line and options (each a default,
        or an `Option` with its default and accepted values)."""
        key = normalise(name)
        declared = dict(options or {})
        defaults = {k: v.default if isinstance(v, Option) else v for k, v in declared.items()}
        limits = {k: v for k, v in declared.items() if isinstance(v, Option)}

        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            source = _source_of(factory)
            if key in self._entries:
                first = self._entries[key].source
                raise ConfigError(
                    f"{self.kind} '{key}' is registered twice: by {first} and by {source}"
                )
            for option, limit in limits.items():
                if limit.problem(limit.default) is not None:
                    raise ConfigError(f"{self.kind} '{key}' (from {source}): the default {option}={limit.default!r} "
                                      f"is outside what it accepts ({limit.describe()})")
            self._entries[key] = Entry(key, factory, help.strip(), defaults, source, limits)
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
                raise ConfigError(f"{self.kind} option {values.echo(item)} in {values.echo(spec)} must look like "
                                  f"key=value")
            if key not in entry.options:
                accepted = ", ".join(entry.options) or "no options"
                raise ConfigError(
                    f"{self.kind} '{entry.name}' has no option {values.echo(key)} (it accepts: {accepted})"
                )
            try:
                chosen[key] = values.like(entry.options[key], raw)
                limit = entry.limits.get(key)
                problem = limit.problem(chosen[key]) if limit is not None else None
                if problem:
                    raise values.ValueProblem(problem)
            except values.ValueProblem as problem:
                raise ConfigError(
                    f"{self.kind} '{entry.name}' option {key}={values.echo(raw.strip())}: {problem}"
                ) from None
        return Spec(entry.name, chosen)

    def build(self, spec: str | Spec, *args: Any, **context: Any) -> Any:
        """Build the entry a spec names, passing `context` and the spec's options.

        A factory that raises (a plugin's bug, or options it rejects) becomes one line that
        names the entry and where it came from.
        """
        parsed = spec if isinstance(spec, Spec) else self.parse(spec)
        entry = self.get(parsed.name)
        try:
            return entry.build(*args, options=parsed.options, **context)
        except MnistresError:
            raise
        except Exception as error:
            raise PluginError(
                f"{self.kind} '{parsed}' (from {entry.source}) failed to build: {type(error).__name__}: {error}"
            ) from error

    def _unknown_message(self, key: str) -> str:
        available = sorted(self._entries)
        message = f"unknown {self.kind} {values.echo(key)}"
        message += wording.did_you_mean(key, available, cutoff=0.5) or "."
        listing = ", ".join(available) if available else "none (no plugins loaded)"
        if autoload_disabled():
            listing += f" (installed plugins were not loaded: {DISABLE_ENV} is set)"
        return f"{message} Available: {listing}"


def normalise(name: str) -> str:
    """Names are case-insensitive and '-' equals '_' (`leaky-relu` is `leaky_relu`)."""
    return str(name).strip().lower().replace("-", "_")


activations = Registry("activation")
optimizers = Registry("optimizer")
schedulers = Registry("scheduler")
callbacks = Registry("callback")
presets = Registry("preset")  # named bundles of RunConfig values; an entry's options are its values
executors = Registry("executor")  # where a sweep's points run (`api.Executor`)
datasets = Registry("dataset")  # what a run trains and validates on (`api.DatasetFiles`)

REGISTRIES: dict[str, Registry] = {
    "activations": activations,
    "optimizers": optimizers,
    "schedulers": schedulers,
    "callbacks": callbacks,
    "presets": presets,
    "executors": executors,
    "datasets": datasets,
}

# --- plugin loading -------------------------------------------------------------------

BUILTIN_MODULE = "mnistres.builtins"
PLUGINS_ENV = "MNISTRES_PLUGINS"  # extra plugins: modules or .py files, separated by os.pathsep or commas
DISABLE_ENV = "MNISTRES_DISABLE_PLUGIN_AUTOLOAD"  # "1": skip entry points (built-ins still load)

_loaded = False
_loading_source: str | None = None
_requested: list[str] = []  # --plugin values, loaded with the others (or at once, if already loaded)
failed_plugins: list[tuple[str, str, str]] = []  # (plugin, source, error) of plugins that did not load
loaded_plugins: list[tuple[str, str]] = []  # (plugin, source) of plugins that did


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


def request(plugins: Iterable[str]) -> None:
    """Plugins named with --plugin: modules or .py files, loaded with the others.

    Unlike a plugin found by entry point, one the user named must load: failing to is a
    user-visible error, not a warning.
    """
    new = [p for p in plugins if p not in _requested]
    _requested.extend(new)
    if _loaded:
        for plugin in new:
            _load_named(plugin, strict=True)


def autoload_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def load_plugins() -> None:
    """Load every plugin once: the built-ins, the ``mnistres.plugins`` entry points (unless
    MNISTRES_DISABLE_PLUGIN_AUTOLOAD is set), MNISTRES_PLUGINS, then --plugin.

    A plugin found by entry point or MNISTRES_PLUGINS that fails is reported on stderr and
    skipped, with whatever it had registered removed: one broken package must not take
    the tool down. Nothing is imported from the current folder unless named.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    if autoload_disabled():
        _load(BUILTIN_MODULE, BUILT_IN, lambda: importlib.import_module(BUILTIN_MODULE), strict=True)
    else:
        entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_builtins_first)
        for entry_point in entry_points:
            dist = entry_point.dist
            if dist is None or dist.metadata["Name"] == "mnistres":
                source = BUILT_IN
            else:
                source = f"{dist.metadata['Name']} {dist.version}"
            module = entry_point.value.split(":")[0]
            _load(entry_point.name, source, lambda module=module: importlib.import_module(module), strict=False)
        _remember_names(_fingerprint(entry_points))  # before MNISTRES_PLUGINS and --plugin: those come and go
    for plugin in filter(None, (p.strip() for p in re.split(rf"[{re.escape(os.pathsep)},]", os.environ.get(PLUGINS_ENV, "")))):
        _load_named(plugin, strict=False)
    for plugin in _requested:
        _load_named(plugin, strict=True)


def _load_named(plugin: str, *, strict: bool) -> None:
    """A plugin given by name: a path to a .py file, or an importable module."""
    path = Path(plugin).expanduser()
    if plugin.endswith(".py") or os.sep in plugin or (os.altsep and os.altsep in plugin):
        if not path.is_file():
            _fail(plugin, "file not found", strict)
            return
        _load(plugin, f"file {path}", lambda: _import_file(path), strict=strict)
    else:
        _load(plugin, _module_source(plugin), lambda: importlib.import_module(plugin), strict=strict)


def _import_file(path: Path) -> None:
    name = "mnistres_plugin_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that the plugin's own classes can be found by name (dataclasses, pickling)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _module_source(module: str) -> str:
    """The distribution (and version) that provides a module, else the module's name."""
    top = module.split(".")[0]
    for dist_name in metadata.packages_distributions().get(top, []):
        try:
            return f"{dist_name} {metadata.version(dist_name)}"
        except metadata.PackageNotFoundError:
            continue
    return f"module {module}"


def _load(plugin: str, source: str, do_import: Callable[[], Any], *, strict: bool) -> None:
    before = {kind: dict(registry._entries) for kind, registry in REGISTRIES.items()}
    try:
        with _registering_as(source):
            do_import()
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any plugin error is isolated, sys.exit() too
        for kind, registry in REGISTRIES.items():  # nothing half-registered stays behind
            registry._entries = before[kind]
        reason = (f"it called sys.exit({error.code!r})" if isinstance(error, SystemExit)
                  else f"{type(error).__name__}: {values.clip(str(error))}")
        _fail(plugin, reason, strict, source)
        return
    loaded_plugins.append((plugin, source))


def _fail(plugin: str, error: str, strict: bool, source: str = "") -> None:
    where = f" ({source})" if source and source != f"file {plugin}" else ""
    if strict:
        raise PluginError(f"plugin '{plugin}'{where} failed to load: {error}")
    failed_plugins.append((plugin, source, error))
    print(f"mnistres: plugin '{plugin}'{where} failed to load and was skipped: {error}", file=sys.stderr)


def _builtins_first(entry_point: metadata.EntryPoint) -> tuple[int, str]:
    dist = entry_point.dist
    is_builtin = dist is not None and dist.metadata["Name"] == "mnistres"
    return (0 if is_builtin else 1, entry_point.name)


# --- names for shell completion ---------------------------------------------------------------------
# Completion must answer at once, and installed plugins may import torch (seconds). So every command
# that loads the plugins notes the names they registered in the user cache, under a fingerprint of
# the installed plugin packages; completion offers those while the fingerprint still holds, and the
# built-ins alone (which import no torch) otherwise.

NAMES_CACHE = "completion-names.json"


def _fingerprint(entry_points: Iterable[metadata.EntryPoint]) -> list[str]:
    """The installed plugin packages, with versions: when it changes, the remembered names are stale."""
    return sorted(f"{ep.name}={ep.value}@{ep.dist.metadata['Name'] if ep.dist else '?'} "
                  f"{ep.dist.version if ep.dist else '?'}" for ep in entry_points)


def _names_cache() -> Path:
    from mnistres.core.places import user_cache

    return user_cache() / NAMES_CACHE


def _remember_names(fingerprint: list[str]) -> None:
    import json

    record = {"fingerprint": fingerprint,
              "names": {kind: [[e.name, e.help] for e in registry._entries.values()]
                        for kind, registry in REGISTRIES.items()}}
    path = _names_cache()
    try:
        if path.is_file() and json.loads(path.read_text(encoding="utf-8")) == record:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(temp, path)
    except (OSError, ValueError):
        pass  # a cache: completion then offers the built-ins only


def completion_names(kind: str) -> list[tuple[str, str]]:
    """(name, help) of every `kind` entry ("activations", ...) that completion may offer, without
    importing any plugin: the names remembered for the installed plugins, else the built-ins."""
    import json

    try:
        record = json.loads(_names_cache().read_text(encoding="utf-8"))
        if record.get("fingerprint") == _fingerprint(metadata.entry_points(group=ENTRY_POINT_GROUP)) \
                and not autoload_disabled():
            return sorted((str(name), str(text)) for name, text in record["names"][kind])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    if not any(source == BUILT_IN for _, source in loaded_plugins):
        _load(BUILTIN_MODULE, BUILT_IN, lambda: importlib.import_module(BUILTIN_MODULE), strict=True)
    return sorted((e.name, e.help) for e in REGISTRIES[kind]._entries.values() if e.source == BUILT_IN)


def describe() -> dict[str, Any]:
    """Every registry's entries and the plugins that loaded or failed, as plain data (`plugins --json`)."""
    load_plugins()
    return {
        "registries": {kind: [{"name": e.name, "help": e.help, "options": dict(e.options), "source": e.source,
                               "accepts": {k: limit.describe() for k, limit in e.limits.items()}}
                              for e in registry.entries()] for kind, registry in REGISTRIES.items()},
        "plugins": [{"name": name, "source": source} for name, source in loaded_plugins],
        "failed_plugins": [{"name": name, "source": source, "error": error} for name, source, error in failed_plugins],
    }


def requested() -> list[str]:
    """The --plugin values of this process (a sweep passes them on to its child processes)."""
    return list(_requested)
