"""`mnistres report`: a Markdown report with PNG figures, from run and sweep directories only.

Every number and every sentence comes from the files the runs wrote (config.yaml,
metrics.jsonl, summary.json); the observations are rules applied to those numbers, with
the thresholds they use written next to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from mnistres import __version__
from mnistres.core import atomic
from mnistres.core.display import markdown_table
from mnistres.reporting import figures as figures_module, search
from mnistres.reporting.observations import observations, pts
from mnistres.runs import about, names, rundir
from mnistres.runs import mistakes as mistakes_module
from mnistres.errors import ConfigError
from mnistres.reporting.reference import METRICS, POINTS, Entry, Reference
from mnistres.runs.results import RESULT_HEADERS, TARGET_ACC, Run, Spread, Study, Variant, result_rows
from mnistres.core.values import shown, text
from mnistres.core.wording import plural


@dataclass
class Written:
    path: Path
    figures: list[Path]
    observations: list[list[str]]  # per study, in the order given


def default_output(paths: list[Path]) -> Path:
    """report.md inside the one sweep or run given, else in the current folder."""
    return Path(paths[0]) / rundir.REPORT if len(paths) == 1 else Path(rundir.REPORT)


def write(studies: list[Study], output: Path, reference: Optional[Reference] = None) -> Written:
    if output.suffix.lower() != ".md":
        raise ConfigError(f"--output {output}: the report is Markdown, give a path ending in .md")
    if output.exists() and output.is_dir():
        raise ConfigError(f"--output {output} is a folder; give a file path ending in .md")
    runs = [run for study in studies for run in study.runs]
    if not runs:
        raise ConfigError("no finished runs to report on yet (no summary.json found in the given directories)")
    figures: list[Path] = []
    observed: list[list[str]] = []
    sources = ", ".join(f"`{study.path}`" if study.path else f"{len(study.runs)} run directories" for study in studies)
    lines = [
        f"# Report: {', '.join(study.title for study in studies)}",
        "",
        f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by mnistres {__version__} from {sources}. "
        "Every number below is read from the runs' own files.",
        "",
    ]
    lines += architecture_section(runs)
    slugs: set[str] = set()
    for study in studies:
        # One study: its sections are the report's own; several: one chapter each.
        h = "##" if len(studies) == 1 else "###"
        if len(studies) > 1:
            lines += [f"## {study.title}", ""]
        if not study.runs:
            lines += ["No run of this sweep has finished yet.", ""]
            observed.append([])
            continue
        slug = names.safe_name(study.title) or "runs"
        slug = next(f"{slug}-{n}" for n in range(1, len(studies) + 2) if f"{slug}-{n}" not in slugs) \
            if slug in slugs else slug
        slugs.add(slug)
        # Figures are named by the report and the study, once: report-lr-curves.png, not report-report-lr-....
        stem = slug if slug == output.stem or slug.startswith(f"{output.stem}-") else f"{output.stem}-{slug}"
        if study.note:
            lines += [f"Note: {study.note}.", ""]
        lines += what_was_run(study, h)
        if study.tune is not None:  # a search: its own figures, and its best trial as the search scored it
            lines += search.section(study, output, stem, figures, h)
        lines += results_section(study, h)
        if reference is not None:
            lines += reference_section(study, reference, h)
        if study.tune is None:  # a search's many variants: its history and parallel coordinates say it better
            curves = output.with_name(f"{stem}-curves.png")
            figures_module.plot_curves(study, curves)
            figures.append(curves)
            lines += [f"{h} Curves", "", f"![Training curves, {study.title}]({curves.name})", "",
                      "Mean over each variant's runs per epoch; the shaded band spans the lowest to the highest run. "
                      "Train values are averaged over each epoch while the model learned; validation values are "
                      "measured at the end of the epoch.", ""]
            lines += per_class_section(study, h)
        best = search.best_run(study) if study.tune is not None else best_run(study)
        if best is not None:
            matrix = output.with_name(f"{stem}-confusion.png")
            figures_module.plot_confusion(best, matrix)
            figures.append(matrix)
            lines += confusion_section(best, matrix, h)
            lines += mistakes_section(best, output.with_name(stem), figures, h)
        observed.append(observations(study) + (reference_observations(study, reference) if reference else []))
        lines += [f"{h} Observations", ""] + [f"- {text}" for text in observed[-1]] + [""]
    atomic.write_text(output, "\n".join(lines))
    return Written(output, figures, observed)


_table = markdown_table


# --- sections --------------------------------------------------------------------------------


def architecture_section(runs: list[Run]) -> list[str]:
    """The summary table of the first run's network, rebuilt from its config (no weights read)."""
    config = runs[0].config
    counts = sorted({run.summary.get("parameters") for run in runs if run.summary.get("parameters")})
    lines = ["## Architecture", ""]
    try:
        from mnistres import config as config_module
        from mnistres.train import model

        built = config_module.from_dict(config, origin=str(runs[0].path / rundir.CONFIG))
        rows, totals = model.summary_rows(model.from_config(built))
    except Exception as error:  # e.g. an activation from a plugin that is not installed here
        lines += [f"(The layer table could not be rebuilt here: {error}.)", ""]
    else:
        lines += [f"ResNet with width {built.width}, {built.blocks} residual blocks and activation "
                  f"`{built.activation}` (input 1×28×28), as `mnistres summary` prints it:", ""]
        lines += _table(("layer (type)", "output shape", "parameters"),
                        [[f"{name} ({kind})", shape, f"{params:,}"] for name, kind, shape, params in rows])
        total = totals["trainable"] + totals["non_trainable"]
        lines += [f"Total parameters: {total:,} (trainable {totals['trainable']:,}); BatchNorm running "
                  f"statistics: {totals['buffers']:,} values.", ""]
    if len(counts) > 1:
        lines += [f"The runs differ in size: {', '.join(f'{n:,}' for n in counts)} parameters.", ""]
    kinds = list(dict.fromkeys(str(run.config.get("activation")) for run in runs))
    if len(kinds) > 1:
        lines += [f"The runs use different activations ({', '.join(f'`{k}`' for k in kinds)}) in these same places.", ""]
    return lines


def what_was_run(study: Study, h: str) -> list[str]:
    runs = study.runs
    first = runs[0]
    seeds = sorted({run.config.get("seed") for run in runs if run.config.get("seed") is not None})
    keys = [k for k in first.config if rundir.is_setting(k) and k != "seed" and k not in study.varied]
    shared = [k for k in keys if len({text(run.config.get(k)) for run in runs}) == 1]
    differing = [k for k in keys if k not in shared]
    sizes = sorted({(run.summary.get("train_images"), run.summary.get("val_set"), run.summary.get("val_images"))
                    for run in runs}, key=str)
    def unrecorded(missing: int) -> str:
        return f" (not recorded for {plural(missing, 'run')})" if missing else ""

    devices = sorted({str(run.summary["device"]) for run in runs if run.summary.get("device")})
    versions = sorted({", ".join(f"{k} {v}" for k, v in (run.summary.get("versions") or {}).items()) for run in runs}
                      - {""})
    device_text = "; ".join(devices) + unrecorded(sum(not run.summary.get("device") for run in runs))
    version_text = "; ".join(versions) + unrecorded(sum(not run.summary.get("versions") for run in runs))
    starts = sorted(run.summary["started"] for run in runs if run.summary.get("started"))
    ends = sorted(run.summary["finished"] for run in runs if run.summary.get("finished"))
    rows = [
        ["dataset", f"{', '.join(sorted({str(run.config.get('dataset')) for run in runs}))}: " + "; ".join(
            f"{train:,} training images, validation on the {val_set} set ({val:,} images)"
            for train, val_set, val in sizes if train is not None)],
        ["runs", f"{len(runs)}: {plural(len(study.variants), 'variant')} × seeds {', '.join(map(str, seeds))}"],
        ["varied", "; ".join(f"{key}: {', '.join(shown(key, v) for v in _values(study, key))}"
                             for key in study.varied) or "nothing (a single variant)"],
        ["shared settings", ", ".join(f"{k}={shown(k, first.config.get(k))}" for k in shared)],
    ]
    if differing:
        rows.append(["also differs", ", ".join(differing) + " (not a sweep axis; see the runs' config.yaml)"])
    computed = sorted({_numerics_text(run.summary.get("numerics")) for run in runs} - {""})
    rows += [["device", device_text.strip() or "not recorded"], ["versions", version_text.strip() or "not recorded"]]
    if computed:
        rows.append(["numbers computed with", "; ".join(computed) + (" (runs computed differently can differ in "
                                                                    "the last digits)" if len(computed) > 1 else "")])
    if starts and ends:
        rows.append(["dates", f"{starts[0]} to {ends[-1]} (UTC)"])
    rows += about_rows(study)
    return [f"{h} What was run", ""] + _table(("", ""), rows)


def about_rows(study: Study) -> list[list[str]]:
    """What the user said about the study and its runs (about.yaml): the sweep's or search's tags and note,
    each tag with the runs that carry it, and the runs' notes."""
    def cell(words: str) -> str:  # one table cell: a note's lines and pipes would break the table
        return " ".join(words.split()).replace("|", "\\|")

    rows: list[list[str]] = []
    if study.path is not None:
        whole, _ = about.read_quietly(study.path)
        kind = "search" if study.tune is not None else "sweep"
        if whole.tags:
            rows.append([f"the {kind}'s tags", cell(" ".join(f"#{tag}" for tag in whole.tags))])
        if whole.note:
            rows.append([f"the {kind}'s note", cell(whole.note)])
    tagged: dict[str, list[str]] = {}
    notes: list[str] = []
    for run in study.runs:
        told, _ = about.read_quietly(run.path)
        for tag in told.tags:
            tagged.setdefault(tag, []).append(run.name)
        if told.note:
            notes.append(f"{run.name}: {told.note}")
    if tagged:
        rows.append(["runs' tags", cell("; ".join(f"#{tag}: {', '.join(names)}" for tag, names in tagged.items()))])
    if notes:
        rows.append(["runs' notes", cell(" · ".join(notes))])
    return rows


def _numerics_text(numerics: Any) -> str:
    """What a run's numbers depended on (summary.json "numerics"), in a few words."""
    if not isinstance(numerics, dict):
        return ""
    parts = [str(numerics.get("device", "?"))]
    if numerics.get("device") == "cuda":
        parts += [str(numerics.get("gpu", "")), f"cuDNN {numerics.get('cudnn')}"]
    else:
        counts = numerics.get("threads_by_epoch")  # present where the epochs' counts differ
        if isinstance(counts, list) and counts and all(isinstance(n, int) for n in counts):
            threads = f"{min(counts)}–{max(counts)} threads"
        else:
            threads = plural(int(numerics.get("threads", 0) or 0), "thread")
        parts += [threads, str(numerics.get("cpu_capability", ""))]
    parts.append(str(numerics.get("precision", "")))
    if numerics.get("environment"):
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(numerics["environment"].items())))
    return ", ".join(part for part in parts if part)


def _values(study: Study, key: str) -> list[Any]:
    seen: list[Any] = []
    for variant in study.variants:
        if variant.values.get(key) not in seen:
            seen.append(variant.values.get(key))
    return seen


def results_section(study: Study, h: str) -> list[str]:
    seeds = max(len(variant.runs) for variant in study.variants)
    note = ("Accuracies in %, mean ± sample standard deviation over each variant's completed runs"
            if seeds > 1 else "Accuracies in % (one run per variant, so no spread)")
    return ([f"{h} Results", ""] + _table(RESULT_HEADERS, result_rows(study))
            + [f"{note}; \"final\" is the last epoch. Epochs to {100 * TARGET_ACC:g} %: the first epoch whose "
               "validation accuracy reached it. Measured s/epoch: training seconds per epoch (evaluation excluded) "
               "as these runs happened to take them, so they depend on the machine and on what else it ran, not "
               "only on the variant.", ""])


def per_class_section(study: Study, h: str) -> list[str]:
    rows = []
    for variant in study.variants:
        tables = [run.summary.get("per_class") or [] for run in variant.usable]
        if not tables or not tables[0]:
            continue
        classes = [row["class"] for row in tables[0]]
        cells = [Spread.of(table[i]["accuracy"] for table in tables if len(table) > i).percent(1)
                 for i in range(len(classes))]
        rows.append([variant.label, *cells])
    if not rows:
        return []
    return ([f"{h} Per-class validation accuracy (final epoch, %)", ""]
            + _table(["variant", *map(str, classes)], rows))


def best_run(study: Study) -> Optional[Run]:
    candidates = [run for variant in study.variants for run in variant.usable if run.summary.get("confusion_matrix")]
    return max(candidates, key=lambda run: run.final["val_acc"], default=None)


def confusion_section(run: Run, figure: Path, h: str) -> list[str]:
    matrix = run.summary["confusion_matrix"]
    rows = [[str(label), *[str(n) for n in row]] for label, row in enumerate(matrix)]
    return ([f"{h} Confusion matrix of the best run (`{run.name}`, final validation accuracy "
             f"{100 * run.final['val_acc']:.2f} %)", "",
             "Rows: true class; columns: predicted class; final epoch.", ""]
            + _table(["true \\ predicted", *map(str, range(len(matrix)))], rows)
            + [f"![Confusion matrix, {run.name}]({figure.name})", ""])


MISTAKES_SHOWN = 36  # the report's grid of the best run's most confident mistakes
PAIRS_SHOWN = 5  # rows of its confused-pairs grid


def mistakes_section(run: Run, stem: Path, figures: list[Path], h: str) -> list[str]:
    """The best run's most confident mistakes, and its most confused pairs with examples, from the
    mistakes.npz it wrote when it completed (runs older than that file have none)."""
    found = rundir.read_mistakes(run.path)
    if found is None:
        return [f"{h} What the best run gets wrong", "",
                f"`{run.name}` kept no {rundir.MISTAKES} (runs made before mnistres wrote that file have none); "
                f"`mnistres eval {run.path / rundir.LAST} --mistakes {MISTAKES_SHOWN}` draws them from its final "
                "checkpoint.", ""]
    lines = [f"{h} What the best run gets wrong", "",
             f"`{run.name}` misclassified {found.total:,} of the {found.scored:,} images of {found.source} after its "
             f"last epoch." + (" None to show." if not found.total else ""), ""]
    if not found.total:
        return lines
    grid, pairs_figure = stem.with_name(f"{stem.name}-mistakes.png"), stem.with_name(f"{stem.name}-pairs.png")
    shown = found.first(MISTAKES_SHOWN)
    figures_module.plot_mistakes(shown, grid, f"{run.name}: the {len(shown)} most confident mistakes")
    pairs = mistakes_module.confused_pairs(run.summary["confusion_matrix"], PAIRS_SHOWN)
    figures_module.plot_pairs(found, pairs, pairs_figure, f"{run.name}: the most confused pairs")
    figures += [grid, pairs_figure]
    lines += [f"Its {len(shown)} most confident mistakes, each captioned true → predicted class, the probability "
              "the model gave the wrong class, and the image's index in its file:", "",
              f"![Most confident mistakes, {run.name}]({grid.name})", "",
              "The pairs of classes it confuses most (true → predicted, images of the confusion matrix), with "
              "examples, the most confident first:", "",
              f"![Most confused pairs, {run.name}]({pairs_figure.name})", ""]
    short = [(true, predicted, n, len(found.of_pair(true, predicted))) for true, predicted, n in pairs
             if len(found.of_pair(true, predicted)) < min(n, figures_module.PAIR_EXAMPLES)]
    if short:
        which = ", ".join(f"{true} → {predicted} shows {k} of its {n:,}" for true, predicted, n, k in short)
        lines += [f"The run kept its {len(found):,} most confident mistakes of {found.total:,} ({rundir.MISTAKES}), so "
                  f"some pairs show fewer examples than they have images: {which}.", ""]
    return lines


# --- beside a reference -------------------------------------------------------------------------

FIGURE_NAMES = {("train_acc", "first"): "train acc after epoch 1", ("train_acc", "final"): "final train acc",
                ("train_acc", "best"): "best train acc", ("val_acc", "first"): "val acc after epoch 1",
                ("val_acc", "final"): "final val acc", ("val_acc", "best"): "best val acc"}


def _ours(run: Run, metric: str, point: str) -> Optional[float]:
    """A run's figure at a reference's point: after epoch 1, after the last epoch, or its highest."""
    values = [row.get(metric) for row in run.history if isinstance(row.get(metric), (int, float))]
    if not values:
        return None
    return {"first": values[0], "final": values[-1], "best": max(values)}[point]


def matched(study: Study, reference: Reference) -> list[tuple[Variant, Entry]]:
    """The study's variants that one reference entry describes, in the study's order."""
    pairs = [(variant, reference.match(variant.values)) for variant in study.variants]
    return [(variant, entry) for variant, entry in pairs if entry is not None]


def reference_rows(study: Study, reference: Reference) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per matched variant: each figure as `ours / theirs` (%)."""
    pairs = matched(study, reference)
    shown = [(metric, point) for metric in METRICS for point in POINTS
             if any(entry.figure(metric, point) is not None for _, entry in pairs)]
    headers = ["variant", *(f"{FIGURE_NAMES[figure]} %, here / {reference.title}" for figure in shown), "section"]
    rows = []
    for variant, entry in pairs:
        cells = []
        for metric, point in shown:
            ours = Spread.of(_ours(run, metric, point) for run in variant.usable).percent()
            theirs = entry.figure(metric, point)
            cells.append(f"{ours} / {'—' if theirs is None else f'{100 * theirs:.2f}'}")
        rows.append([variant.label, *cells, entry.section or "—"])
    return headers, rows


def reference_section(study: Study, reference: Reference, h: str) -> list[str]:
    headers, rows = reference_rows(study, reference)
    if not rows:
        return [f"{h} Beside {reference.title}", "",
                f"No variant of this study has an entry in {reference.path.name} (matched on the varied settings: "
                f"{', '.join(study.varied) or 'none'}).", ""]
    notes = [f"- {variant.label}: {entry.note}" for variant, entry in matched(study, reference) if entry.note]
    unlike = unlike_sentence(study, reference)
    return ([f"{h} Beside {reference.title}", "",
             f"Our runs' figures (mean ± sample standard deviation over completed runs) beside {reference.title}'s "
             f"({reference.source}; read from `{reference.path.name}`); — where it gives none.", ""]
            + ([f"**{unlike}**", ""] if unlike else [])
            + _table(headers, rows) + (["Notes from the reference:", ""] + notes + [""] if notes else []))


def unlike_sentence(study: Study, reference: Reference) -> str:
    """Where the compared runs were set up otherwise than the reference's (its `setup:`), in one sentence; ''."""
    configs = [run.config for variant, _ in matched(study, reference) for run in variant.usable]
    found = reference.unlike(configs, study.varied)
    if not found:
        return ""
    ours = ", ".join(f"{key}={' / '.join(values)}" for key, values, _ in found)
    theirs = ", ".join(f"{key}={value}" + (" (all images)" if (key, value) == ("train_size", "none") else "")
                       for key, _, value in found)
    it = "it" if len(found) == 1 else "them"
    epochs = " (for epochs: the final and the best ones)" if any(key == "epochs" for key, _, _ in found) else ""
    return (f"Not like for like: these runs have {ours}, {reference.title} had {theirs}; the figures that depend "
            f"on {it}{epochs} compare runs set up differently.")


def reference_observations(study: Study, reference: Reference) -> list[str]:
    """Which matched variants differ from the reference by more than our seeds' spread (the range from
    the lowest to the highest run), figure by figure; which agree."""
    pairs = matched(study, reference)
    if not pairs:
        return [f"No variant matches an entry of {reference.title} ({reference.path.name})."]
    unlike = unlike_sentence(study, reference)
    found, within, without = [unlike] if unlike else [], [], []
    for variant, entry in pairs:
        differing = []
        compared = 0
        for metric in METRICS:
            for point in POINTS:
                theirs = entry.figure(metric, point)
                ours = [value for value in (_ours(run, metric, point) for run in variant.usable) if value is not None]
                if theirs is None or not ours:
                    continue
                compared += 1
                low, high = min(ours), max(ours)
                if low <= theirs <= high:
                    continue
                span = f"{100 * low:.2f}–{100 * high:.2f} %" if len(ours) > 1 else f"{100 * low:.2f} %"
                side = f"above our highest run by {pts(theirs - high)}" if theirs > high else \
                    f"below our lowest run by {pts(low - theirs)}"
                differing.append(f"{FIGURE_NAMES[metric, point]} {span} here against {100 * theirs:.2f} % ({side})")
        if differing:
            runs = len(variant.usable)
            spread = "our seeds' range" if runs > 1 else "our one run (a single seed has no spread, so any gap counts)"
            found.append(f"{variant.label} differs from {reference.title} (section {entry.section or '?'}) by more "
                         f"than {spread}: {'; '.join(differing)}.")
        elif compared:
            within.append(variant.label)
        elif variant.usable:
            without.append(variant.label)
    if within:
        found.append(f"Every figure {reference.title} gives lies within our runs' range for: {', '.join(within)}.")
    if without:
        found.append(f"{reference.title[0].upper() + reference.title[1:]} gives no figure to compare for: "
                     f"{', '.join(without)}.")
    return found
