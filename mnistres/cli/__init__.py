"""The `mnistres` command line: parse options, build a RunConfig, call the library, show results.

No training logic lives here, and torch is imported only inside the commands that need it, so
`mnistres --help` answers at once. `app` holds the Typer app and the error boundary, `options` the
options commands share; each command is a module of its own, registered on the app as it is imported.
"""

import importlib

from mnistres.cli.app import app, main
from mnistres.cli.options import LAYER_OPTIONS, RUN_OPTIONS

# Each command registers itself on `app` as it is imported; `--help` lists them in this order.
for _command in ("train", "sweep", "tune", "report", "eval", "predict", "export", "summary", "plugins", "runs", "serve"):
    importlib.import_module(f"mnistres.cli.{_command}")

__all__ = ["LAYER_OPTIONS", "RUN_OPTIONS", "app", "main"]
