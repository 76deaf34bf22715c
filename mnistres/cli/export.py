"""`mnistres export`: a checkpoint as a self-contained .pt2 or .onnx artefact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnistres.cli.app import app, json_mode, one_process, print_json, use_plugins
from mnistres.cli.options import DataDirOpt, PluginOpt


@app.command("export")
def export_command(
    checkpoint: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="A checkpoint (.pt) written by `mnistres train`.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE",
                                         help="model.pt2 (torch.export) or model.onnx (ONNX).", show_default=False)],
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Write a self-contained inference artefact: float images (N, 1, 28, 28) in [0, 1] in, 10 logits out.

    The normalisation is built in. The file is loaded back and checked against the checkpoint on test images.
    """
    one_process("export")
    json_mode(as_json)
    use_plugins(plugin)
    from mnistres.inference.export import export

    result = export(checkpoint, output, data_dir=data_dir)
    if as_json:
        return print_json(result)
    from mnistres.core import display

    console = display.console()
    console.print(f"Wrote {result['output']} ({result['format']}): input {result['input']}; output "
                  f"{result['output_values']}.", markup=False, highlight=False, soft_wrap=True)
    if result["checked_images"]:
        console.print(f"Checked on {result['checked_on']}: same prediction on {result['same_prediction']:.1%}, "
                      f"largest logit difference {result['max_abs_difference']:.2g}.", markup=False,
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"Not checked: {result['note']}.", style="yellow", markup=False, soft_wrap=True)
