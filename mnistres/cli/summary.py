"""`mnistres summary`: the architecture as a Keras-style table."""

from __future__ import annotations

from typing import Annotated

import typer

from mnistres import config as config_module
from mnistres.cli.app import app, json_mode, print_json, use_plugins
from mnistres.cli.options import ActivationOpt, ConfigOpt, DeviceOpt, PluginOpt, SetOpt


@app.command()
def summary(
    config_file: ConfigOpt = None,
    activation: ActivationOpt = None,
    device: DeviceOpt = None,
    sets: SetOpt = None,
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
) -> None:
    """The architecture as a Keras-style table: layer, output shape, parameters."""
    json_mode(as_json)
    use_plugins(plugin)
    run_config = config_module.build(config_file, {"activation": activation, "device": device}, sets or [])

    from mnistres.train import devices, model
    from mnistres.core import display
    from mnistres.resolve import resolve

    network = model.from_config(resolve(run_config))
    network.to(devices.torch_device(run_config.device))
    rows, totals = model.summary_rows(network)
    title = (f"ResNet: width {run_config.width}, {run_config.blocks} residual blocks, "
             f"activation {run_config.activation}, input (None, 1, 28, 28)")
    if as_json:
        return print_json({"title": title, "layers": [{"layer": layer, "type": kind, "output_shape": shape,
                                                        "parameters": count} for layer, kind, shape, count in rows],
                            "totals": totals})
    display.console().print(display.layers_table(rows, totals, title))
