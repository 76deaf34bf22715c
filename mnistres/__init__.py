"""mnistres: train, evaluate and inspect a small ResNet on MNIST.

The library API lives in submodules so that importing the package stays cheap
(no torch until a run needs it):

    from mnistres.config import RunConfig
    from mnistres.train.loop import train
    from mnistres.inference.evaluate import evaluate_checkpoint
"""

import os as _os
import sys as _sys

# `python -m mnistres` puts the current folder first on sys.path before this package is even
# imported; Python sets argv[0] to "-m" while it looks the package up. Drop the folder here,
# before the first import of anything else, so that a csv.py or yaml.py lying there is never
# imported in its place (plugins from files load only when named).
if _sys.argv[:1] == ["-m"] and _sys.path and _sys.path[0] in ("", _os.getcwd()):
    del _sys.path[0]

from importlib import metadata as _metadata  # noqa: E402

try:
    __version__ = _metadata.version("mnistres")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
