"""`mnistres serve`: a local page to draw digits on and browse runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistres.cli.app import app, one_process, use_plugins
from mnistres.cli.options import PluginOpt
from mnistres.serve.server import MAX_UPLOAD_MB


@app.command()
def serve(
    runs_dir: Annotated[Optional[Path], typer.Argument(
        metavar="RUNS_DIR", help="A folder of runs (and sweep and tune directories) to browse. "
                                   "\\[default: runs, when it exists]", show_default=False)] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(
        "--checkpoint", metavar="CKPT", help="A checkpoint (.pt) to draw on first; the page can pick any best.pt or "
                                             "last.pt under RUNS_DIR too.")] = None,
    host: Annotated[str, typer.Option(
        metavar="HOST", help="The address to listen on; another than 127.0.0.1 lets other machines see your runs.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="The port (0: any free one).", min=0, max=65535)] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    max_upload: Annotated[float, typer.Option(
        metavar="MB", help="The largest image upload accepted, in megabytes (a larger one gets HTTP 413).",
        min=0.001)] = MAX_UPLOAD_MB,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps.")] = "auto",
    threads: Annotated[int, typer.Option(metavar="INT", help="CPU threads for torch (0: one per core, fewer while other processes keep cores busy).")] = 0,
    plugin: PluginOpt = None,
) -> None:
    """A local web page: draw a digit and see what a checkpoint thinks, and browse the runs under RUNS_DIR
    (curves, per-class accuracy, confusion matrix, mistakes, a sweep's or tune's report), live while they train.

    Offline: the page loads nothing from the internet. Its JSON API (/api/predict, /api/runs, ...) serves
    scripts too. Ctrl-C stops it.
    """
    one_process("serve")
    use_plugins(plugin)
    from mnistres.core import display, interrupts
    from mnistres.errors import ConfigError
    from mnistres.serve import server

    if runs_dir is not None and not runs_dir.is_dir():
        raise ConfigError(f"{runs_dir} is not a folder of runs" + (" (give a checkpoint with --checkpoint)"
                                                                    if runs_dir.suffix == ".pt" else ""))
    folder = runs_dir if runs_dir is not None else (Path("runs") if Path("runs").is_dir() else None)
    if folder is None and checkpoint is None:
        raise ConfigError("nothing to serve: there is no runs/ folder here; give a runs folder or --checkpoint CKPT")
    serving = server.start(folder, checkpoint, host=host, port=port, device=device, threads=threads,
                           max_upload_mb=max_upload)
    console = display.console()
    try:
        if checkpoint is not None:  # a checkpoint that does not load is a mistake in the command: said now
            serving.site.predictor.trained(checkpoint)
        if not server.is_loopback(host):
            display.console(stderr=True).print(
                f"Warning: listening on {host}: anyone who can reach this machine can see your runs and use the model.",
                style="yellow", highlight=False, soft_wrap=True)
        what = " and ".join(part for part in (str(folder) if folder is not None else "",
                                              str(checkpoint) if checkpoint is not None else "") if part)
        console.print(f"Serving {what} at {serving.url} (Ctrl-C stops it)", markup=False, highlight=False,
                      soft_wrap=True)
        if open_browser:
            import webbrowser

            webbrowser.open(serving.url)
        with interrupts.sigterm_as_interrupt():
            try:
                serving.server.serve_forever(poll_interval=0.2)
            except KeyboardInterrupt:
                console.print("Stopped.", markup=False, highlight=False)
    finally:
        serving.close()
