"""The public door for plugins written before `mnistres.api` existed: `from mnistres.callbacks import
Callback` (the same class as `mnistres.api.Callback`). The built-in callbacks are `mnistres.builtins.callbacks`."""

from mnistres.api import Callback, TrainerState
from mnistres.builtins.callbacks import EarlyStopping, PerClassAccuracy, Progress, epoch_line

__all__ = ["Callback", "EarlyStopping", "PerClassAccuracy", "Progress", "TrainerState", "epoch_line"]
