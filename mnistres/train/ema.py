"""An exponential moving average of the weights (Polyak averaging), evaluated and saved as the model.

Late in training the weights jitter around a good point; their running average sits nearer to it
and usually tests better. The trainer keeps the average next to the trained model, updates it after
every optimizer step, refreshes its BatchNorm statistics (precise BN) and evaluates and checkpoints
it; the trained weights stay in the checkpoint too, so that `--resume` goes on exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

WARMUP = 10  # steps over which the decay grows towards its setting (TensorFlow's num_updates rule)


class WeightAverage:
    """After optimizer step t: average += (1 - d) (weights - average), d = min(decay, (1 + t) / (WARMUP + t)).

    The warm-up keeps the random starting weights from weighing on the average for thousands of
    steps. Buffers (BatchNorm's running statistics) are copied from the model, not averaged: precise
    BN recomputes them for the average's own weights before each evaluation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        # Views of the tensors, made once: the optimizer and load_state_dict change them in place.
        self.averaged = list(self.model.parameters())
        self.trained = [p.detach() for p in model.parameters()]
        self.averaged_buffers, self.trained_buffers = list(self.model.buffers()), list(model.buffers())

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (WARMUP + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the trained weights after optimizer step `step` (counted from 1 over the whole run)."""
        torch._foreach_lerp_(self.averaged, self.trained, 1.0 - self.decay_at(step))
        for mine, theirs in zip(self.averaged_buffers, self.trained_buffers):
            mine.copy_(theirs)
