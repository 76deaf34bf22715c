"""`mnistres plugins`: every registry's entries, with options and source."""

from __future__ import annotations

from typing import Annotated

import typer

from mnistres.cli.app import app, json_mode, print_json, use_plugins
from mnistres.cli.options import PluginOpt


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Every activation, optimizer, schedule, callback, preset, executor and dataset, with options and source; plugins that failed to load."""
    json_mode(as_json)
    use_plugins(plugin)
    from mnistres import registry
    from mnistres.core import display

    listing = {kind: reg.entries() for kind, reg in registry.REGISTRIES.items()}
    if as_json:
        return print_json(registry.describe())
    console = display.console(wide=True, whole_cells=False)  # help is prose: wrapped at 160, not 400+ columns
    for kind, entries in listing.items():
        console.print(display.registry_table(kind, entries))
    for name, source, error in registry.failed_plugins:
        where = f" ({source})" if source else ""
        console.print(f"Plugin '{name}'{where} failed to load and was skipped: {error}", style="red", markup=False,
                      soft_wrap=True)
