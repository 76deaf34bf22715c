"""`mnistres eval`: a checkpoint measured on a dataset split, or on the user's own images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistres.cli.app import app, json_mode, one_process, print_json, use_plugins
from mnistres.cli.options import DataDirOpt, PluginOpt
from mnistres.errors import MnistresError


@app.command("eval")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="A checkpoint (.pt) written by `mnistres train`.", show_default=False)],
    per_class: Annotated[bool, typer.Option("--per-class", help="Support, accuracy, precision, recall, F1 per class.")] = False,
    confusion: Annotated[bool, typer.Option("--confusion", help="The 10x10 confusion matrix.")] = False,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", metavar="NAME", help="A dataset name (mnistres plugins lists them). \\[default: the one the checkpoint was trained on]")] = None,
    data_dir: DataDirOpt = None,
    split: Annotated[str, typer.Option(
        metavar="SPLIT", help="test: the test file; train: the whole training file; run-train: the images this run "
                              "trained on; run-val: the images it validated on.")] = "test",
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(
        metavar="INT", help="Images per evaluation batch. \\[default: 256 on the CPU, 1024 on a GPU]")] = None,
    threads: Annotated[int, typer.Option(metavar="INT", help="CPU threads for torch (0: one per core, fewer while other processes keep cores busy).")] = 0,
    download: Annotated[bool, typer.Option("--download/--no-download", show_default=False,
                                           help="Fetch missing dataset files. \\[default: --download]")] = True,
    images: Annotated[Optional[Path], typer.Option(
        "--images", metavar="FOLDER",
        help="Evaluate on your own images instead: a folder with one subfolder per class, 0 to 9.")] = None,
    no_preprocess: Annotated[bool, typer.Option(
        "--no-preprocess", help="With --images: the images are already in MNIST's form (28x28, white on black).")] = False,
    mistakes: Annotated[int, typer.Option(
        "--mistakes", metavar="N", show_default=False,
        help="Draw the N most confident mistakes as a grid (true → predicted, confidence, index in the file) "
             "and list them (with --json).")] = 0,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="PNG", help="Where --mistakes draws its grid. \\[default: mistakes.png; with --json none, only -o draws]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Measure a checkpoint on a dataset split, or on your own images; the architecture comes from the checkpoint."""
    one_process("eval")
    json_mode(as_json)
    use_plugins(plugin)
    from mnistres.core import display
    from mnistres.inference.evaluate import evaluate_checkpoint, evaluate_images

    if images is not None:
        result = evaluate_images(checkpoint, images, preprocess=not no_preprocess, device=device,
                                 batch_size=batch_size, threads=threads, mistakes=mistakes, figure=output,
                                 draw=not as_json or output is not None)
    elif no_preprocess:
        raise MnistresError("--no-preprocess applies to --images only")
    else:
        result = evaluate_checkpoint(checkpoint, dataset=dataset, data_dir=data_dir, split=split,
                                     device=device, batch_size=batch_size, download=download, threads=threads,
                                     mistakes=mistakes, figure=output, draw=not as_json or output is not None)
    if as_json:
        return print_json(result)
    console = display.console()
    warnings = display.console(stderr=True)
    for skipped in result.get("skipped", []):
        warnings.print(f"skipped {skipped['file']}: {skipped['error']}", style="yellow", highlight=False, soft_wrap=True)
    for note in result.get("notes", []):
        warnings.print(f"Note: {note}.", style="yellow", highlight=False, soft_wrap=True)
    console.print(
        f"{result['dataset']} {result['split']} ({result['scored']}): accuracy {result['accuracy']:.4f}  "
        f"loss {result['loss']:.4f}   [{result['checkpoint']}, epoch {result['epoch']}, {result['device']}]",
        highlight=False, soft_wrap=True,
    )
    if per_class:
        console.print(display.per_class_table(result["per_class"]))
    if confusion:
        console.print(display.confusion_table(result["confusion_matrix"]))
    if "mistakes" in result:
        found = result["mistakes"]
        console.print(f"Mistakes: {found['total']:,} in all; the {len(found['shown'])} most confident drawn in "
                      f"{found['figure']}", highlight=False, soft_wrap=True)
