"""`mnistres predict`: the digit in each of the user's images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List

import typer

from mnistres.inference import images
from mnistres.cli.app import app, json_mode, one_process, print_json, use_plugins
from mnistres.cli.options import PluginOpt


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="A checkpoint (.pt) written by `mnistres train`.", show_default=False)],
    inputs: Annotated[List[Path], typer.Argument(
        help=f"Image files or folders: {images.formats()}.", metavar="IMAGE",
        show_default=False)],
    no_preprocess: Annotated[bool, typer.Option(
        "--no-preprocess", help="The images are already in MNIST's form (28x28, white digit on black).")] = False,
    top: Annotated[int, typer.Option(metavar="INT", help="How many of the likeliest digits to show (1 to 10).",
                                     min=1, max=10)] = 3,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Show the likeliest digits one per line, each with a bar as long as its probability.")] = False,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps.")] = "auto",
    threads: Annotated[int, typer.Option(metavar="INT", help="CPU threads for torch (0: one per core, fewer while other processes keep cores busy).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """The digit in each image, with its confidence and the runners-up.

    Each image is first brought into MNIST's form: grayscale, inverted if the background is light, cropped to the ink, scaled to 20 pixels on its longer side and centred by centre of mass in 28x28.

    Images that cannot be read, or hold no digit, are reported one by one (exit code 1); the others are still predicted.
    """
    one_process("predict")
    json_mode(as_json)
    use_plugins(plugin)
    from mnistres.core import display
    from mnistres.inference.predict import predict as run_prediction

    result = run_prediction(checkpoint, inputs, preprocess=not no_preprocess, device=device, threads=threads, top=top)
    failed = sum(1 for row in result["predictions"] if "error" in row)
    if as_json:
        print_json(result)
    else:
        console = display.console(wide=True)
        console.print(display.predictions_table(result["predictions"],
                                                f"{result['checkpoint']} (epoch {result['epoch']}, {result['device']})",
                                                bars=explain))
        warnings = display.console(stderr=True)
        for skipped in result["skipped"]:  # what a folder held that is not read: said, not left out silently
            warnings.print(f"skipped {skipped['file']}: {skipped['error']}", style="yellow", highlight=False,
                           soft_wrap=True)
    if failed:
        raise typer.Exit(1)
