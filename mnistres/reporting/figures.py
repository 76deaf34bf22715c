"""The PNG figures: training curves, confusion matrices and grids of mistaken digits.

Drawn with matplotlib's object API (no global state, no display needed) and written atomically.
`report` and `eval --mistakes` call these; what goes into a figure is decided by its caller.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mnistres.core import atomic
from mnistres.runs.results import Run, Study, Variant

if TYPE_CHECKING:
    from mnistres.runs.mistakes import Mistakes


def _series(variant: Variant, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs, and per epoch the mean, lowest and highest of `key` over the variant's runs (accuracies
    in %, as the tables give them)."""
    scale = 100.0 if key.endswith("_acc") else 1.0
    by_epoch: dict[int, list[float]] = {}
    for run in variant.runs:
        for row in run.history:
            if isinstance(row.get(key), (int, float)):
                by_epoch.setdefault(row["epoch"], []).append(scale * float(row[key]))
    epochs = sorted(by_epoch)
    return (epochs, [statistics.fmean(by_epoch[e]) for e in epochs],
            [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs])


PANELS = (("train_acc", "train accuracy (%)"), ("val_acc", "validation accuracy (%)"),
          ("train_loss", "train loss"), ("val_loss", "validation loss"))


def plot_curves(study: Study, path: Path) -> None:
    save(curves_figure(study), path)


def curves_figure(study: Study) -> Any:
    from matplotlib.figure import Figure  # the object API: no global state, no display needed

    figure = Figure(figsize=(11, 8), layout="constrained")
    axes = figure.subplots(2, 2)
    for ax, (key, title) in zip(axes.flat, PANELS):
        for variant in study.variants:
            epochs, mean, low, high = _series(variant, key)
            if not epochs:
                continue
            line, = ax.plot(epochs, mean, marker="o", markersize=3, label=f"{variant.label} ({len(variant.runs)})")
            if len(variant.runs) > 1:
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if "loss" in key and ax.has_data():
            _log_axis(ax)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes.flat[0].legend(fontsize="small", title="variant (runs)")
    figure.suptitle(f"{study.title}: mean over runs, band = lowest to highest")
    return figure


def _log_axis(ax: Any) -> None:
    """A loss axis on a log scale with labels enough to read it. Over several decades 1, 2 and 5 of each are
    labelled; within one decade every minor tick (0.03, 0.04, ...), since 1-2-5 may leave a single label;
    over less than a factor of 3 a log scale shows nothing a linear one does not, so the axis stays linear."""
    from matplotlib.ticker import FuncFormatter

    low, high = ax.dataLim.y0, ax.dataLim.y1  # the data's own range, before any margin
    if low <= 0 or high / low < 3:
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_one_two_five))
    ax.yaxis.set_minor_formatter(FuncFormatter(_one_two_five if high / low > 20 else _plain))


def _plain(value: float, _position: Any = None) -> str:
    return f"{value:.3g}" if value > 0 else ""


def _one_two_five(value: float, _position: Any = None) -> str:
    """Log-axis labels at 1, 2 and 5 of each decade, written plainly (0.2, not 2e-01)."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if any(abs(mantissa - m) < 1e-6 for m in (1, 2, 5)) else ""


def plot_confusion(run: Run, path: Path) -> None:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    matrix = run.summary["confusion_matrix"]
    figure = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow([[max(n, 0.5) for n in row] for row in matrix], cmap="Blues", norm=LogNorm())
    size = len(matrix)
    for true in range(size):
        for predicted in range(size):
            if matrix[true][predicted]:
                ax.text(predicted, true, str(matrix[true][predicted]), ha="center", va="center", fontsize=7,
                        color="white" if true == predicted else "black")
    ax.set_xticks(range(size))
    ax.set_yticks(range(size))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{run.name}: final epoch")
    figure.colorbar(image, ax=ax, label="images (log scale)")
    save(figure, path)


def save(figure: Any, path: Path) -> None:
    with atomic.replacing(path) as temp:
        figure.savefig(temp, format="png", dpi=110)


# --- mistakes ----------------------------------------------------------------------------------------

GRID_COLUMNS = 6  # images per row of a mistakes grid (36 mistakes: 6 x 6)
PAIR_EXAMPLES = 8  # images per row of the confused-pairs grid


def _digit(ax: Any, image: Any, caption: str) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(caption, fontsize=8)


def plot_mistakes(found: Mistakes, path: Path, title: str) -> None:
    """Each mistake as its image, captioned "true 4 → 9" with the model's confidence and where the
    image is (its index, or its file); the most confident mistake first, row by row."""
    from matplotlib.figure import Figure

    count = len(found)
    columns = max(1, min(GRID_COLUMNS, count))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(1.55 * columns + 0.3, 1.75 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= count:
            ax.axis("off")
            continue
        where = found.where(i)
        where = f"#{where}" if isinstance(where, int) else _short(str(where))
        _digit(ax, found.images[i], f"{found.label[i]} → {found.predicted[i]} ({_percent(found.confidence[i])})\n{where}")
    if not count:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.suptitle(title, fontsize=10)
    save(figure, path)


def plot_pairs(found: Mistakes, pairs: Sequence[tuple[int, int, int]], path: Path, title: str) -> None:
    """One row per confused pair (true → predicted, how many images), with up to PAIR_EXAMPLES of its
    mistakes, the most confident first."""
    from matplotlib.figure import Figure

    rows = max(1, len(pairs))
    figure = Figure(figsize=(1.2 * PAIR_EXAMPLES + 1.6, 1.3 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, PAIR_EXAMPLES, squeeze=False)
    for row, ax_row in enumerate(axes):
        examples = found.of_pair(*pairs[row][:2]) if row < len(pairs) else found.first(0)
        for i, ax in enumerate(ax_row):
            if i < len(examples):
                _digit(ax, examples.images[i], _percent(examples.confidence[i]))
            else:
                ax.axis("off")
        if row < len(pairs):
            true, predicted, n = pairs[row]
            # Only the most confident mistakes are kept: a pair may have fewer of them at hand than images.
            kept = f"\n{len(examples)} kept" if len(examples) < min(n, PAIR_EXAMPLES) else ""
            ax_row[0].set_ylabel(f"{true} → {predicted}\n{n} image{'s' if n != 1 else ''}{kept}", fontsize=9,
                                 rotation=0, ha="right", va="center")
            ax_row[0].axis("on")
            ax_row[0].set_xticks([])
            ax_row[0].set_yticks([])
            if not len(examples):
                ax_row[0].set_frame_on(False)
    figure.suptitle(title, fontsize=10)
    save(figure, path)


def _percent(probability: float) -> str:
    """A probability in %, whole numbers except near certainty (99.7 %, never a rounded-up 100 %)."""
    return f"{100 * probability:.0f} %" if probability < 0.995 else f"{100 * probability:.1f} %"


def _short(name: str, limit: int = 16) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


# --- a search (mnistres tune) ---------------------------------------------------------------------------


def plot_history(trials: Sequence[Any], path: Path) -> None:
    """Each trial's held-out accuracy by trial number (pruned ones hollow, at the accuracy they had reached),
    and the best so far."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.subplots()
    done = [t for t in trials if t.value is not None and t.run.status == "completed"]
    pruned = [t for t in trials if t.value is not None and t.run.status == "pruned"]
    ax.scatter([t.number for t in done], [100 * t.value for t in done], s=22, label="completed", zorder=3)
    if pruned:
        ax.scatter([t.number for t in pruned], [100 * t.value for t in pruned], s=22, facecolors="none",
                   edgecolors="grey", label="pruned (when stopped)", zorder=3)
    best, steps = None, []
    for trial in sorted(done, key=lambda t: t.number):
        best = trial.value if best is None else max(best, trial.value)
        steps.append((trial.number, 100 * best))
    if steps:
        ax.step([n for n, _ in steps], [v for _, v in steps], where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("held-out accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save(figure, path)


def plot_importances(importances: dict[str, float], path: Path) -> None:
    from matplotlib.figure import Figure

    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = Figure(figsize=(7, 0.5 * len(ordered) + 1.5), layout="constrained")
    ax = figure.subplots()
    ax.barh([name for name, _ in ordered], [value for _, value in ordered], color="tab:blue")
    for y, (_, value) in enumerate(ordered):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance (PED-ANOVA: share in deciding the best trials)")
    ax.set_xlim(0, max(1e-9, max(v for _, v in ordered)) * 1.2)
    save(figure, path)


def plot_parallel(trials: Sequence[Any], space: dict[str, Any], path: Path) -> None:
    """One vertical axis per searched key and one for the held-out accuracy; a line per trial, coloured by its
    accuracy (pruned ones grey). Ranges on their own scale (log where searched so), choices evenly spaced."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from mnistres.core.values import text

    keys = list(space)
    shown_trials = [t for t in trials if t.value is not None]
    figure = Figure(figsize=(1.8 * (len(keys) + 1) + 1, 5), layout="constrained")
    ax = figure.subplots()
    positions: dict[str, Any] = {}
    labels: dict[str, list[tuple[float, str]]] = {}
    for key in keys:
        spec = space[key]
        if "choices" in spec:
            choices = [text(c) for c in spec["choices"]]
            step = 1 / max(1, len(choices) - 1)
            positions[key] = lambda v, choices=choices, step=step: choices.index(text(v)) * step \
                if text(v) in choices else 0.5
            labels[key] = [(i * step, choice) for i, choice in enumerate(choices)]
        else:
            low, high, log = float(spec["low"]), float(spec["high"]), bool(spec.get("log"))
            scale = (lambda x: math.log10(x)) if log else (lambda x: x)
            positions[key] = lambda v, low=low, high=high, scale=scale: (scale(float(v)) - scale(low)) / \
                (scale(high) - scale(low))
            labels[key] = [(0.0, f"{low:g}"), (1.0, f"{high:g}")]
    values = [100 * t.value for t in shown_trials]
    low_v, high_v = (min(values), max(values)) if values else (0.0, 100.0)
    span = (high_v - low_v) or 1.0
    colours = colormaps["viridis"]
    ranked = sorted(shown_trials, key=lambda t: t.value)  # coloured by rank: most trials crowd near the top
    for rank, trial in enumerate(ranked):
        ys = [positions[key](trial.params.get(key)) for key in keys] + [(100 * trial.value - low_v) / span]
        pruned = trial.run.status != "completed"
        ax.plot(range(len(ys)), ys, color="lightgrey" if pruned else colours(rank / max(1, len(ranked) - 1)),
                linewidth=0.8 if pruned else 1.5, zorder=1 if pruned else 2)
    for x, key in enumerate(keys + ["held-out acc (%)"]):
        ax.axvline(x, color="black", linewidth=0.8)
        ticks = labels.get(key) or [(0.0, f"{low_v:.2f}"), (1.0, f"{high_v:.2f}")]
        for y, label in ticks:
            ax.text(x + 0.03, y, _short(label), fontsize=7, va="center")
    ax.set_xticks(range(len(keys) + 1))
    ax.set_xticklabels(keys + ["held-out acc (%)"], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Trials (colour: rank by held-out accuracy, yellow best; grey: pruned)", fontsize=9)
    save(figure, path)
