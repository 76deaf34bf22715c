"""A trained model, rebuilt from its checkpoint: the network on its device and what feeds it.

Where a checkpoint becomes a model, for `eval`, `predict` and `export` (the file format itself is
`checkpoint`'s): the architecture comes from the config stored in the checkpoint, so the user never
repeats it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistres.train import devices
from mnistres.train.metrics import eval_batch_size
from mnistres.core.values import clip, echo


@dataclass
class Trained:
    """A model rebuilt from a checkpoint, ready on its device, with what is needed to feed it."""

    path: str
    network: nn.Module
    run_config: Any  # the RunConfig stored in the checkpoint
    epoch: Any
    mean: float
    std: float
    device: torch.device
    amp: torch.dtype | None

    def data_root(self, data_dir: str | None = None) -> Path:
        """Where its dataset is: --data-dir, else $MNISTRES_DATA_DIR, else the folder it was trained
        from, else the user cache."""
        from mnistres.train import data

        return data.resolve_data_dir(data_dir or (None if os.environ.get("MNISTRES_DATA_DIR")
                                                  else self.run_config.data_dir))

    def batches(self, split: Any, batch_size: int | None = None) -> Any:
        from mnistres.train import data

        return data.Batches(split, batch_size or eval_batch_size(self.device), mean=self.mean, std=self.std,
                            channels_last=self.run_config.channels_last)


def load_trained(path: str | os.PathLike, *, device: str = "auto", threads: int = 0) -> Trained:
    """The checkpoint's model, rebuilt from its stored config (no architecture options needed)."""
    from mnistres import config as config_module
    from mnistres.train import checkpoint, data, model as model_module
    from mnistres.errors import ConfigError, UnknownNameError

    devices.set_threads(threads)
    target = devices.torch_device(device)
    share = devices.core_share(threads, target)
    document = checkpoint.load(path)
    try:
        run_config = config_module.from_dict(document["config"], origin=f"checkpoint {path}")
    except ConfigError as error:
        raise type(error)(f"{path}: its stored config does not load: {error}") from None
    try:
        network = model_module.from_config(run_config)
    except UnknownNameError:
        supplied = (document.get("plugins") or {}).get("activation", {})
        source = supplied.get("source") if isinstance(supplied, dict) else None
        raise UnknownNameError(
            f"{path} needs activation {echo(run_config.activation)} from "
            f"{clip(source, 200) if isinstance(source, str) else 'an unknown source'}, which is not installed here: "
            f"install it, or load it with --plugin"
        ) from None
    try:
        network.load_state_dict(document["model"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise ConfigError(f"{path}: weights do not fit the stored architecture: {str(error).splitlines()[0]}") from None
    # The same memory layout as in training, so eval reproduces the logged accuracy exactly.
    network.to(target, memory_format=torch.channels_last if run_config.channels_last else torch.contiguous_format)
    network.eval()
    if share is not None:  # threads=0 on the CPU: those the cores left free by other processes allow
        torch.set_num_threads(share.choose())
    mean, std = document["normalisation"] if "normalisation" in document else data.normalisation(run_config.dataset)
    return Trained(str(path), network, run_config, document.get("epoch"), float(mean), float(std), target,
                   devices.amp_dtype(run_config.amp, target, document.get("precision")))
