"""RunConfig: everything that defines a run, as plain data.

A config is built in layers, later wins: the defaults below, a preset (`--preset`, a named
bundle of values from the presets registry), a YAML file (`--config`), the explicit CLI
options, then `--set key=value`. Every layer is checked for unknown
keys and every value for its type and range before any work starts, so a typo costs a
second, not an epoch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Tuple

from mnistres.runs import names
from mnistres.core import values, wording
from mnistres.errors import ConfigError
from mnistres.registry import normalise

AMP_MODES = ("auto", "off", "bf16", "fp16")
LOW_RES_MODES = ("shrink", "crop")
DEFAULT_CALLBACKS = ("per_class_accuracy", "progress")


def setting(default: Any, help: str, **more: Any) -> Any:
    """A RunConfig field and its help, declared once: `mnistres train --help`, completion after --set and
    the settings reference page are made from it (`help_of`, `mnistres.cli.reference`). `more`: `metavar` (what
    the option takes, when its type does not say), `unset` (what the default means, where it is not a value),
    `registry` (the registry whose names it takes, for completion), `example` (a value, for the docs)."""
    return dataclasses.field(default=default, metadata={"help": help, **more})


SPEC = "NAME[:KEY=VALUE,...]"  # what a key naming a registry entry takes


@dataclass(frozen=True)
class RunConfig:
    # data
    dataset: str = setting("mnist", "A dataset name: mnist, fashion-mnist, or a plugin's (mnistres plugins lists "
                                    "them).", metavar="NAME", registry="datasets")
    data_dir: Optional[str] = setting(None, "Folder holding MNIST/raw/ (or FashionMNIST/raw/).", metavar="PATH",
                                      unset="$MNISTRES_DATA_DIR, then the user cache")
    download: bool = setting(True, "Fetch missing dataset files (needs network); false: fail, listing the files "
                                   "expected.")
    train_size: Optional[int] = setting(None, "Use this many training images (a subset drawn with the seed).",
                                        unset="all")
    val_split: float = setting(0.0, "Hold out this fraction of the training set for validation instead of using "
                                    "the test set.")
    # model
    activation: str = setting("relu", "Activation and its options.", example="leaky_relu:negative_slope=0.1",
                              metavar=SPEC, registry="activations")
    width: int = setting(64, "Channels of the stem and of every residual block.")
    blocks: int = setting(3, "Residual blocks (two 3x3 convolutions each).")
    # optimisation
    optimizer: str = setting("adam", "Optimizer and its options.", example="sgd:momentum=0.9,nesterov=true",
                             metavar=SPEC, registry="optimizers")
    lr: float = setting(0.001, "Learning rate (the peak, for onecycle).")
    weight_decay: Optional[float] = setting(None, "Weight decay, passed to the optimizer as its option.",
                                            unset="the optimizer's")
    momentum: Optional[float] = setting(None, "Momentum, passed to the optimizer as its option (onecycle cycles "
                                              "it itself: with it, momentum only switches SGD's on).",
                                        unset="the optimizer's")
    schedule: str = setting("cosine", "Learning-rate schedule and its options, stepped every batch; the report "
                                      "kept the rate constant (constant).", metavar=SPEC, registry="schedulers")
    batch_size: int = setting(32, "Images per step.")
    epochs: int = setting(10, "Passes over the training set.")
    label_smoothing: float = setting(0.0, "Cross-entropy label smoothing; 0: off.")
    ema: float = setting(0.0, "Decay per step of a moving average of the weights (e.g. 0.999), which is evaluated, "
                              "precise-BN refreshed and saved as the model; 0: off.")
    augment: bool = setting(False, "Random shifts of up to 2 pixels during training.")
    rotate: float = setting(0.0, "Random rotation of each training image by up to ± this many degrees; 0: off.")
    zoom: float = setting(0.0, "Random scaling of each training image by up to ± this fraction (0.1: 0.9 to 1.1 "
                               "times); 0: off.")
    translate: float = setting(0.0, "Random (sub-pixel) shift of each training image by up to ± this many pixels; "
                                    "0: off.")
    elastic: float = setting(0.0, "Random elastic distortion of each training image (Simard et al., 2003): RMS "
                                  "displacement in pixels; 0: off.")
    elastic_sigma: float = setting(4.0, "Smoothness of the elastic distortion: width in pixels of the Gaussian "
                                        "that blurs it.")
    low_res: int = setting(0, "Side in pixels of the training images for the first low_res_epochs (cheaper "
                              "steps; the rest, precise BN and evaluation at full size); 0: full size throughout.")
    low_res_epochs: float = setting(0.0, "Epochs (fractions allowed) trained at low_res before the rest at full "
                                         "size.")
    low_res_batch_size: int = setting(0, "Images per step during the low_res steps, a multiple of batch_size "
                                         "(bigger steps of small images use a CPU better; the schedule still "
                                         "counts batches of batch_size); 0: batch_size.")
    low_res_mode: str = setting("shrink", "How images get to low_res: shrink (the whole image, scaled down) | crop "
                                          "(a window around the centre, moved by up to 2 pixels: the digit at full "
                                          "scale).", metavar="MODE")
    seed: int = setting(0, "Seeds the weights, the subset, the hold-out and the batch order.")
    precise_bn: int = setting(2048, "Training images that refresh BatchNorm statistics before each evaluation; 0: "
                                    "off (Keras's way).")
    sync_bn: bool = setting(True, "Under torchrun, BatchNorm statistics of the global batch (results as one "
                                  "process); false: each process's share.")
    # execution
    device: str = setting("auto", "auto | cpu | cuda | cuda:N | mps.", metavar="DEVICE")
    amp: str = setting("auto", "Mixed precision: auto (bf16 on CUDA and on CPUs with bf16 in hardware (AVX512-BF16, AMX), off elsewhere) | off | bf16 | fp16.",
                       metavar="MODE")
    compile: bool = setting(False, "torch.compile the model.")
    channels_last: bool = setting(True, "NHWC memory layout (faster convolutions on CPU and GPU).")
    threads: int = setting(0, "CPU threads for torch; 0: one per core this process may use (within a container's "
                              "CPU quota), fewer while other processes keep cores busy, chosen again before each "
                              "epoch. On the CPU the thread count is part of a run's numbers: N fixes it.")
    callbacks: Tuple[str, ...] = setting(DEFAULT_CALLBACKS, "Callbacks to run, each with its options; the list "
                                                            "replaces the default.", metavar=SPEC,
                                         registry="callbacks")
    # output
    name: Optional[str] = setting(None, "Run directory name.", metavar="NAME", unset="from the settings and the time")
    out_dir: str = setting("runs", "Parent folder of run directories.", metavar="PATH")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["callbacks"] = list(self.callbacks)
        return data

    def replace(self, **changes: Any) -> "RunConfig":
        return from_dict({**self.to_dict(), **changes})


KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunConfig))
_TYPES = typing.get_type_hints(RunConfig)
_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_METAVARS = {int: "INT", float: "FLOAT", bool: "BOOL", str: "TEXT"}


# --- what each key means, from its field ----------------------------------------------


def help_of(key: str) -> str:
    """The key's help, as its field declares it."""
    return _FIELDS[key].metadata["help"]


def metavar_of(key: str) -> str:
    """What the key takes, in a word: its declared metavar, else its type's (INT, FLOAT, ...)."""
    declared = _FIELDS[key].metadata.get("metavar")
    if declared:
        return declared
    kind = _TYPES[key]
    inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return _METAVARS.get(inner[0] if inner else kind, "VALUE")


def default_text(key: str) -> str:
    """The default as a user would write it, or what it means where it is not a value (train_size: all)."""
    return _FIELDS[key].metadata.get("unset") or values.text(_FIELDS[key].default)


def registry_of(key: str) -> Optional[str]:
    """The registry whose names the key takes ("activations", ...), if any."""
    return _FIELDS[key].metadata.get("registry")


def example_of(key: str) -> str:
    """A value worth showing for the key, if its field gives one (for the docs)."""
    return _FIELDS[key].metadata.get("example", "")


# --- building -------------------------------------------------------------------------


def from_dict(data: Mapping[str, Any], *, origin: str = "config") -> RunConfig:
    """Coerce and validate `data` (unknown keys rejected) into a RunConfig."""
    return _make({check_key(key, origin): value for key, value in data.items()})


def _make(checked: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from values whose keys are already checked: each value typed, then the whole validated."""
    coerced = {key: coerce(key, value) for key, value in checked.items()}
    if "dataset" in coerced:  # accept Fashion-MNIST, fashion_mnist, ...
        coerced["dataset"] = dataset_name(coerced["dataset"])
    config = RunConfig(**coerced)
    validate(config)
    return config


def build(
    config_file: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    callbacks: Iterable[str] = (),
    preset: str | None = None,
) -> RunConfig:
    """defaults <- preset <- YAML file <- explicit options (and --callback) <- --set pairs, then validate."""
    file_data = load_yaml(config_file) if config_file is not None else {}
    if "axes" in file_data:
        raise ConfigError(f"{config_file} describes a sweep (it has axes:); run it with: mnistres sweep --config {config_file}")
    return layered(file_data, str(config_file), options, sets, callbacks, preset)


def layered(file_data: Mapping[str, Any], origin: str, options: Mapping[str, Any] | None = None,
            sets: Iterable[str] = (), callbacks: Iterable[str] = (), preset: str | None = None) -> RunConfig:
    """The layers after the defaults: a preset, `file_data` (from `origin`), options, then --set pairs.

    The preset is `preset` (--preset) or else the file's `preset:` key. `callbacks` (from
    --callback) are added to the list the earlier layers give; one with the name of a callback
    already listed replaces it, so `--callback progress:refresh_s=1` re-sets it.
    """
    file_data = dict(file_data)
    file_preset = file_data.pop("preset", None)
    chosen = preset if preset is not None else file_preset
    merged: dict[str, Any] = preset_values(chosen) if chosen is not None else {}
    # Keys still holding a value the preset chose (not one typed in its spec, `fast:lr=0.1`), for the hint below.
    from_preset = set(merged) - set(_spec_options(chosen)) if chosen is not None else set()
    for raw, value in file_data.items():
        key = check_key(raw, origin)
        if isinstance(value, list) and typing.get_origin(_TYPES[key]) is not tuple:
            # `lr: [0.1, 0.01]`: a list where a run takes one value means a sweep was meant.
            raise ConfigError(f"{origin}: {key} is a list ({values.echo(value)}), and a run takes one value; for "
                              f"one run per value put it under axes: (axes: {{{key}: [...]}}) and run "
                              f"mnistres sweep --config {origin}", key=key)
        merged[key] = value
        from_preset.discard(key)
    for raw, value in (options or {}).items():
        if value is not None:
            key = check_key(raw, "option")
            merged[key] = value
            from_preset.discard(key)
    added = list(callbacks)
    if added:
        try:
            listed = split_specs(merged.get("callbacks", list(DEFAULT_CALLBACKS)))
        except values.ValueProblem as problem:
            raise ConfigError(f"callbacks: {problem}") from None
        names = {normalise(spec.partition(":")[0]) for spec in added}
        merged["callbacks"] = [spec for spec in listed if normalise(spec.partition(":")[0]) not in names] + added
    for pair in sets:
        key, value = parse_set(pair)
        merged[key] = value
        from_preset.discard(key)
    try:
        return _make(merged)  # every key above was checked in its own layer, with its origin
    except ConfigError as error:
        if error.key not in from_preset:
            raise
        # A value the user never typed (a preset's, clashing with one they did): say where it came from.
        default = RunConfig.__dataclass_fields__[error.key].default
        shown = str(default).lower() if isinstance(default, bool) else default
        fix = (f"--set {error.key}=none" if default is None else
               f"--set {error.key}={shown}" if isinstance(default, (int, float, str)) else f"--set {error.key}=...")
        raise ConfigError(f"{error}; the value comes from preset '{chosen}': replace it, e.g. {fix} "
                          f"(mnistres's default)", key=error.key) from None


def _spec_options(spec: str) -> list[str]:
    """The keys typed in a preset spec (`fast:lr=0.1` -> lr), as RunConfig spells them."""
    from mnistres.registry import presets

    return [str(key).replace("-", "_") for key in presets.parse(spec).options]


def preset_values(spec: Any) -> dict[str, Any]:
    """The RunConfig values a preset spec (`fast`, `fast:lr=0.003`) stands for, keys checked."""
    from mnistres.registry import presets

    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"preset={values.echo(spec)}: expected a preset name (see `mnistres plugins`)")
    parsed = presets.parse(spec)
    bundle = presets.build(parsed)
    if not isinstance(bundle, Mapping):
        raise ConfigError(f"preset '{parsed.name}' (from {presets.get(parsed.name).source}) gave "
                          f"{type(bundle).__name__}, not a mapping of RunConfig keys")
    return {check_key(key, f"preset '{parsed.name}'"): value for key, value in bundle.items()}


def load_yaml(path: str | Path) -> dict[str, Any]:
    from mnistres.core import yamlfile

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" if not path.exists() else f"{path} is not a file")
    data = yamlfile.load(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of RunConfig keys, not {type(data).__name__}")
    return data


def parse_set(pair: str) -> tuple[str, Any]:
    """`key=value` from --set; the value is typed later, by the key."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {values.echo(pair)}")
    return check_key(key, "--set"), value


def check_key(key: Any, origin: str) -> str:
    name = (key if isinstance(key, str) else values.echo(key)).strip().replace("-", "_")
    if name in KEYS:
        return name
    if name == "preset":
        raise ConfigError(f"'preset' in {origin}: a preset is chosen with --preset NAME, or preset: in a config file")
    hint = wording.did_you_mean(name, KEYS) or "."
    raise ConfigError(f"unknown key {values.echo(name)} in {origin}{hint} Keys: {', '.join(KEYS)}")


def coerce(key: str, value: Any) -> Any:
    """Turn `value` (text or YAML) into the type the field declares."""
    kind = _TYPES[key]
    optional = False
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        kind, optional = inner[0], True
    try:
        if optional and values.is_none(value):
            return None
        if kind is bool:
            return values.to_bool(value)
        if kind is int:
            return values.to_int(value)
        if kind is float:
            return values.to_float(value)
        if kind is str:
            return values.to_str(value)
        if typing.get_origin(kind) is tuple:
            return tuple(split_specs(value))
    except values.ValueProblem as problem:
        raise ConfigError(f"{key}={values.echo(value)}: {problem}") from None
    raise AssertionError(f"no coercion for {key}: {kind}")  # a RunConfig field of a new type


def split_specs(value: Any) -> list[str]:
    """A list of `name[:k=v,...]` specs, from a YAML list or comma-separated text.

    In text, a piece that is only `k=v` belongs to the spec before it, so
    `early_stopping:patience=3,min_delta=0.01,progress` is two specs.
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [values.to_str(item) for item in value]
    if not isinstance(value, str):
        raise values.ValueProblem("expected a list of names")
    specs: list[str] = []
    for piece in filter(None, (p.strip() for p in value.split(","))):
        if "=" in piece and ":" not in piece and specs:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


# --- validation -----------------------------------------------------------------------

# Whole-number keys and the range a run can use: beyond these a run would not fit in memory or
# time, or the number would overflow where torch uses it (seeds feed 64-bit generators after an offset).
IMAGE_SIDE = 28  # both datasets' images are 28x28
TRAIN_IMAGES = 60_000  # both datasets' training files hold 60,000 images
LOW_RES_MIN = 8  # below this the stem and its pooling leave a 2x2 map

INT_RANGES: dict[str, tuple[int, int, str]] = {
    "train_size": (1, 10_000_000, "images, or none for all"),
    "width": (1, 1024, "channels per layer"),
    "blocks": (0, 64, "residual blocks"),
    "batch_size": (1, 65_536, "images per step"),
    "epochs": (1, 10_000, "passes over the data"),
    "seed": (0, 2**32 - 1, "seeds, as numpy takes them"),
    "precise_bn": (0, 1_000_000, "images; 0 turns it off"),
    # Any machine's limit; the machine a run is on allows fewer (devices.set_threads says how many).
    "threads": (0, 4096, "CPU threads; 0 follows the cores left free"),
}


# The random warps of the training images: each one's largest value, and its unit.
WARP_LIMITS = {"rotate": (180.0, "degrees"), "zoom": (0.9, "a fraction"), "translate": (14.0, "pixels"),
               "elastic": (14.0, "pixels")}

# What the other checked keys accept, in words: `validate`'s messages and the reference pages say the same.
ACCEPTS: dict[str, str] = {
    "val_split": "0 (use the test set) or a fraction between 0 and 1",
    "lr": "a positive number",
    "weight_decay": "zero or more",
    "momentum": "from 0 up to (not including) 1",
    "label_smoothing": "from 0 up to (not including) 1",
    **{key: f"from 0 (off) to {high:g} ({unit})" for key, (high, unit) in WARP_LIMITS.items()},
    "elastic_sigma": "from 0.5 to 14 (pixels)",
    "low_res": f"0 (off) or from {LOW_RES_MIN} to {IMAGE_SIDE - 1} pixels (the images are {IMAGE_SIDE}x{IMAGE_SIDE})",
    # These two name the current value in validate's message (batch_size=32, epochs=10).
    "low_res_batch_size": "0 (batch_size) or a multiple of batch_size, up to 65,536",
    "low_res_epochs": "from 0 up to (not including) epochs: the last part of training is at full size, the size the "
                      "model is evaluated at",
    "ema": "from 0 (off) up to (not including) 1, e.g. 0.999",
    "amp": " | ".join(AMP_MODES),
    "low_res_mode": " | ".join(LOW_RES_MODES),
    "name": names.NAME_RULE,
}


def _int_range(key: str) -> str:
    low, high, meaning = INT_RANGES[key]
    return f"from {low:,} to {high:,} ({meaning})"


def range_of(key: str) -> str:
    """What the key accepts, in words, for the reference pages ("" where its type says it all)."""
    if key in INT_RANGES:
        return _int_range(key) + ("; at most train_size" if key == "batch_size" else "")
    if key in ACCEPTS:
        return ACCEPTS[key]
    if registry_of(key):
        return f"a name from the {registry_of(key)} registry, with its options"
    return "true | false" if _TYPES[key] is bool else ""


def check_subset(train_size: int | None, val_split: float, total: int) -> tuple[int, int]:
    """(held out, left to train on) of `total` training images; a ConfigError when `val_split`
    holds out none or `train_size` asks for more than are left. The one statement of that rule:
    `validate` applies it before a run starts, `data.prepare` to the files it read."""
    held = int(round(val_split * total))
    if val_split > 0 and held < 1:
        raise ConfigError(f"val_split={val_split} holds out no image of the {total:,} training images", key="val_split")
    available = total - held
    if train_size is not None and train_size > available:
        raise ConfigError(f"train_size={train_size:,} is more than the {available:,} training images available"
                          + (f" after holding out {held:,}" if held else "") + f"; use --train-size {available} or less",
                          key="train_size")
    return held, available


def dataset_name(name: str) -> str:
    """A dataset's name as configs write it: the registry's name, with '-' (`Fashion_MNIST` -> `fashion-mnist`)."""
    return normalise(name).replace("_", "-")


def validate(config: RunConfig) -> None:
    """Range checks that need no registry and no torch."""

    def bad(key: str, allowed: str, problem: str = "is out of range") -> ConfigError:
        return ConfigError(f"{key}={values.echo(getattr(config, key))} {problem}: {allowed}", key=key)

    from mnistres.registry import datasets

    if config.dataset not in datasets:
        known = [dataset_name(name) for name in datasets.names()]
        hint = wording.did_you_mean(config.dataset.lower(), known) or "."
        raise ConfigError(f"unknown dataset {values.echo(config.dataset)}{hint} Available: {', '.join(known)}")
    for key, (low, high, _) in INT_RANGES.items():
        number = getattr(config, key)
        if number is not None and not low <= number <= high:
            raise bad(key, _int_range(key))
    if not 0.0 <= config.val_split < 1.0:
        raise bad("val_split", ACCEPTS["val_split"])
    check_subset(config.train_size, config.val_split, TRAIN_IMAGES)
    if not config.lr > 0:
        raise bad("lr", ACCEPTS["lr"])
    if config.weight_decay is not None and not config.weight_decay >= 0:
        raise bad("weight_decay", ACCEPTS["weight_decay"])
    if config.momentum is not None and not 0.0 <= config.momentum < 1.0:
        raise bad("momentum", ACCEPTS["momentum"])
    if config.train_size is not None and config.batch_size > config.train_size:
        raise bad("batch_size", f"at most train_size ({config.train_size}): a step cannot use more images than there are")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise bad("label_smoothing", ACCEPTS["label_smoothing"])
    for key, (high, _) in WARP_LIMITS.items():
        if not 0.0 <= getattr(config, key) <= high:
            raise bad(key, ACCEPTS[key])
    if not 0.5 <= config.elastic_sigma <= 14.0:
        raise bad("elastic_sigma", ACCEPTS["elastic_sigma"])
    if config.low_res and not LOW_RES_MIN <= config.low_res < IMAGE_SIDE:
        raise bad("low_res", ACCEPTS["low_res"])
    if config.low_res and (config.low_res_batch_size % config.batch_size or not 0 <= config.low_res_batch_size <= 65_536):
        raise bad("low_res_batch_size", f"0 (batch_size) or a multiple of batch_size={config.batch_size}, up to 65,536")
    if config.low_res_mode not in LOW_RES_MODES:
        raise bad("low_res_mode", ACCEPTS["low_res_mode"] + wording.did_you_mean(config.low_res_mode, LOW_RES_MODES),
                  "is not one of the choices")
    if not 0.0 <= config.low_res_epochs < config.epochs:
        raise bad("low_res_epochs", f"from 0 up to (not including) epochs={config.epochs}: the last part of training "
                                    f"is at full size, the size the model is evaluated at")
    if not 0.0 <= config.ema < 1.0:
        raise bad("ema", ACCEPTS["ema"])
    if config.amp not in AMP_MODES:
        raise bad("amp", ACCEPTS["amp"] + wording.did_you_mean(config.amp, AMP_MODES), "is not one of the choices")
    if config.name is not None and names.name_problem(config.name):
        raise bad("name", names.name_problem(config.name), "cannot name a run directory")
    if not config.out_dir.strip():
        raise bad("out_dir", "a folder path", "is empty")
    for key in ("data_dir", "out_dir"):
        if "\0" in (getattr(config, key) or ""):
            raise bad(key, "a folder path (this one holds a NUL character)", "is not a usable path")
