"""A one-file mnistres plugin: load it with --plugin, no packaging needed.

    mnistres plugins --plugin examples/my_plugin.py
    mnistres train --plugin examples/my_plugin.py --activation swish_beta:beta=1.5 --callback stop_at:target=0.99

It registers an activation and a callback through the same decorators the built-ins use.
"""

from __future__ import annotations

from typing import Any

from mnistres.api import Callback
from mnistres.registry import activations, callbacks


@activations.register("swish_beta", help="x * sigmoid(beta * x); beta=1 is SiLU, large beta approaches ReLU",
                      options={"beta": 1.0})
def swish_beta(*, beta):
    import torch
    from torch import nn

    class SwishBeta(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(beta * x)

    return SwishBeta()


@callbacks.register("stop_at", help="end training after the first epoch whose val_acc reaches `target`",
                    options={"target": 0.99})
class StopAt(Callback):
    def __init__(self, *, target: float) -> None:
        self.target = target

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        if logs["val_acc"] >= self.target:
            trainer.stop_reason = f"val_acc {logs['val_acc']:.4f} reached the target {self.target} in epoch {epoch}"
