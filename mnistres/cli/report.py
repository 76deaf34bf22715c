"""`mnistres report`: a Markdown report with figures from finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mnistres.cli.app import app, json_mode, print_csv, print_json, use_plugins
from mnistres.errors import MnistresError
from mnistres.cli.options import PluginOpt
from mnistres.core.wording import plural


@app.command()
def report(
    paths: Annotated[List[Path], typer.Argument(
        metavar="PATH", help="Run directories, sweep directories, or folders of runs.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="FILE.md", help="Markdown file to write; figures (PNG) go beside it. "
                                                  "\\[default: report.md inside the one directory given, else ./report.md]")] = None,
    reference: Annotated[Optional[Path], typer.Option(
        "--reference", metavar="FILE.yaml", help="Published figures to put beside the runs' own, e.g. "
                                                 "examples/reference/course-report.yaml.")] = None,
    plugin: PluginOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results and the report's path as one JSON object.")] = False,
    as_csv: Annotated[bool, typer.Option(
        "--csv", help="Print one CSV row per run of the report (its study and variant first, then as "
                      "`mnistres runs --csv`) and nothing else; the report is written all the same.")] = False,
) -> None:
    """Write a Markdown report with figures from finished runs; reads only their files."""
    if as_json and as_csv:
        raise MnistresError("--json and --csv: choose one")
    json_mode(as_json or as_csv)
    use_plugins(plugin)
    from mnistres.core import display
    from mnistres.reporting import report as report_module
    from mnistres.runs import results

    from mnistres.reporting import reference as reference_module

    published = reference_module.load(reference) if reference is not None else None
    studies = results.load_studies(paths)
    written = report_module.write(studies, output or report_module.default_output(paths), published)
    for note in dict.fromkeys(study.note for study in studies if study.note):
        display.console(stderr=True).print(f"Note: {note}.", style="yellow", markup=False, soft_wrap=True)
    if as_csv:
        from mnistres.runs import listing

        display.console(stderr=True).print(f"Report: {written.path}", markup=False, highlight=False)
        return print_csv(listing.study_rows(studies))
    if as_json:
        return print_json({"report": str(written.path), "figures": [str(path) for path in written.figures],
                            "studies": [{"title": study.title, "headers": list(results.RESULT_HEADERS),
                                         "rows": results.result_rows(study), "observations": observed}
                                        for study, observed in zip(studies, written.observations)]})
    console = display.console(wide=True)
    for study, observed in zip(studies, written.observations):
        console.print(display.results_table(study.title, results.RESULT_HEADERS_SHORT, results.result_rows(study)))
        if published is not None and report_module.matched(study, published):
            headers, rows = report_module.reference_rows(study, published)
            console.print(display.plain_table(f"{study.title} beside {published.title}", headers, rows))
        for line in observed:
            console.print(f"• {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"Report: {written.path} ({plural(len(written.figures), 'figure')} beside it)", markup=False, highlight=False)
