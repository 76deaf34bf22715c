"""The built-in plugin: importing it registers every built-in entry.

It is listed under the ``mnistres.plugins`` entry point in pyproject.toml, exactly as a
third-party plugin would be, so every run goes through the plugin door.
"""

from mnistres.builtins import activations, callbacks, datasets, executors, optimizers, presets, schedulers  # noqa: F401
