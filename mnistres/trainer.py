"""The public door to training, kept where plugins and scripts have always imported it:
`from mnistres.trainer import train, resume_config`. The loop itself is `mnistres.train.loop`."""

from mnistres.api import Callback
from mnistres.train.loop import RunResult, Trainer, train
from mnistres.train.resume import resume_config

__all__ = ["Callback", "RunResult", "Trainer", "resume_config", "train"]
