"""Name resolution: a RunConfig's registry names, turned once into the specs every later step takes.

`resolve` parses and checks every named part of a config (activation, optimizer, schedule,
callbacks) against the registries, before any work, and returns a `Resolved`: the config with
those specs and where each came from. The trainer builds exactly these specs, a sweep resolves
each point once while planning, and `summary` builds the model from one; nothing downstream
looks a name up again. (Presets are a layer of values, resolved where configs are layered.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mnistres.config import RunConfig
from mnistres.errors import ConfigError
from mnistres.registry import Registry, Spec, activations, callbacks, optimizers, schedulers
from mnistres.runs.rundir import EXECUTION_KEYS
from mnistres.core.values import text

# The RunConfig keys that name registry entries, and the registry each names.
NAMED_KEYS: dict[str, Registry] = {
    "activation": activations, "optimizer": optimizers, "schedule": schedulers, "callbacks": callbacks,
}
# Plain RunConfig keys that reach the optimizer as options of its spec (and only if it declares them).
OPTIMIZER_KEYS = ("momentum", "weight_decay")


@dataclass(frozen=True)
class Resolved:
    """A RunConfig whose named parts are checked and parsed."""

    config: RunConfig
    activation: Spec
    optimizer: Spec  # with the config's momentum and weight_decay among its options
    schedule: Spec
    callbacks: tuple[Spec, ...]

    def provenance(self) -> dict[str, Any]:
        """Which plugin supplied each registry name the run uses (for summary.json and checkpoints)."""
        found: dict[str, Any] = {key: {"name": str(spec), "source": NAMED_KEYS[key].get(spec.name).source}
                                 for key, spec in (("activation", self.activation), ("optimizer", self.optimizer),
                                                   ("schedule", self.schedule))}
        found["callbacks"] = [{"name": str(spec), "source": callbacks.get(spec.name).source} for spec in self.callbacks]
        return found

    def with_execution(self, **changes: Any) -> "Resolved":
        """The same run executed elsewhere (another device, thread count, data folder): names need no new look-up."""
        named = sorted(set(changes) - set(EXECUTION_KEYS))
        if named:
            raise ValueError(f"with_execution changes execution keys only, not {', '.join(named)}")
        return dataclasses.replace(self, config=self.config.replace(**changes))


def resolve(config: RunConfig) -> Resolved:
    """Every registry name in `config` checked and parsed (loads plugins, not torch)."""
    optimizer = optimizers.parse(config.optimizer)
    entry = optimizers.get(optimizer.name)
    extra = {key: getattr(config, key) for key in OPTIMIZER_KEYS if getattr(config, key) is not None}
    for key in extra:
        if key not in entry.options:
            raise ConfigError(f"{key}={extra[key]} does not apply to optimizer '{entry.name}' "
                              f"(it accepts: {', '.join(entry.options)})")
    return Resolved(
        config,
        activation=activations.parse(config.activation),
        optimizer=Spec(optimizer.name, {**optimizer.options, **extra}),
        schedule=schedulers.parse(config.schedule),
        callbacks=tuple(callbacks.parse(spec) for spec in config.callbacks),
    )


def canonical(key: str, value: Any) -> Any:
    """A named value as the registry writes it (`RELU` -> `relu`, `SGD:Momentum=0.9` -> names
    normalised, options typed); other values as they are."""
    registry = NAMED_KEYS.get(key)
    if registry is None:
        return value
    if key == "callbacks":
        return tuple(str(registry.parse(spec)) for spec in value)
    return str(registry.parse(value))


def meaning(key: str, value: Any) -> Any:
    """What a value stands for, to tell two values that mean the same run: a named value is its
    entry with every option, defaults filled in; any other value, as written."""
    registry = NAMED_KEYS.get(key)
    if registry is None:
        return text(value)

    def full(spec: str) -> tuple:
        parsed = registry.parse(spec)
        return parsed.name, tuple(sorted({**registry.get(parsed.name).options, **parsed.options}.items()))

    return tuple(full(spec) for spec in value) if key == "callbacks" else full(value)
