"""The report's ResNet and a Keras-style summary of it.

    Conv 7x7/2, `width` ch -> BN -> act -> MaxPool 3x3/2          28x28 -> 14x14 -> 7x7
    `blocks` x [conv 3x3 -> BN -> act -> conv 3x3 -> BN, + identity, act]
    global average pool -> Dense 64 -> act -> Dense 10

Convolutions carry no bias: the BatchNorm right after each one adds its own shift, so a
bias would be a redundant parameter (this is why our parameter count is a little below
the Keras original's).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from mnistres.train import devices
from mnistres.config import RunConfig
from mnistres.registry import Spec, activations
from mnistres.resolve import Resolved

HIDDEN = 64  # units of the dense layer before the classifier, as in the report
CLASSES = 10


class ResidualBlock(nn.Module):
    def __init__(self, width: int, make_activation: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = make_activation()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = make_activation()  # applied after the identity is added

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(x + y)


class ResNet(nn.Module):
    def __init__(self, make_activation: Callable[[], nn.Module], width: int = 64, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            make_activation(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.blocks = nn.Sequential(*(ResidualBlock(width, make_activation) for _ in range(blocks)))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, HIDDEN),
            make_activation(),
            nn.Linear(HIDDEN, CLASSES),
        )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He initialisation, as torchvision's ResNets use: PyTorch's default (and Keras's
                # Glorot) start the convolutions smaller, and early Adam steps then move the
                # weights so fast that BatchNorm's running statistics lag far behind.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(activation: Spec, width: int, blocks: int) -> ResNet:
    """The network with the activation a parsed, checked Spec names (see `resolve`)."""
    if not isinstance(activation, Spec):
        raise TypeError(f"model.build takes a parsed activation Spec, not {type(activation).__name__}; "
                        f"use model.from_config for a config")
    return ResNet(lambda: activations.build(activation), width=width, blocks=blocks)


def from_config(config: RunConfig | Resolved) -> ResNet:
    """The network a run's settings describe: the one way mnistres makes a model from a config.

    A `Resolved` config brings its checked activation. For a plain RunConfig (one stored in a
    checkpoint or a run directory) only the activation is looked up: rebuilding a trained model
    must not need the optimizer or callbacks it was trained with to be installed.
    """
    if isinstance(config, Resolved):
        return build(config.activation, config.config.width, config.config.blocks)
    return build(activations.parse(config.activation), config.width, config.blocks)


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      amp_dtype: torch.dtype | None = None) -> None:
    """Recompute BatchNorm running statistics from `batches` of training images ("precise BN").

    During training the running averages mix statistics of weights from many steps ago; an
    evaluation right after them measures a model that never existed. Averaging fresh batch
    statistics of the current weights fixes that, at the cost of a few forward passes.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    model.train()
    try:
        for x, _ in batches:
            with devices.autocast(x.device, amp_dtype):
                model(x)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)


def summary_rows(model: nn.Module) -> tuple[list[tuple[str, str, str, int]], dict[str, int]]:
    """(layer, type, output shape, parameters) per leaf layer, in forward order, and totals.

    Shapes come from one forward pass of a single 28x28 image, shown Keras-style with
    the batch dimension as None.
    """
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            def record(mod, _inputs, output, name=name):
                shape = "(None, " + ", ".join(str(d) for d in output.shape[1:]) + ")"
                params = sum(p.numel() for p in mod.parameters(recurse=False))
                kind = type(mod).__name__
                if name.endswith(".act2"):  # the activation that follows the residual add
                    kind += " (after add)"
                rows.append((name, kind, shape, params))

            hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, 1, 28, 28, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return rows, {"trainable": trainable, "non_trainable": frozen, "buffers": buffers}
