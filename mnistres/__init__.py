"""mnistres: train, evaluate and inspect a small ResNet on MNIST.

The library API lives in submodules so that importing the package stays cheap
(no torch until a run needs it):

    from mnistres.config import RunConfig
    from mnistres.trainer import train
    from mnistres.evaluate import evaluate_checkpoint
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mnistres")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
