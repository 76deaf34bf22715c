"""The report's observations: rules applied to a study's numbers, each with the threshold it uses written
next to it, in sentences (`observations`)."""

from __future__ import annotations

import statistics

from mnistres.core.wording import plural
from mnistres.runs.results import TARGET_ACC, Run, Study, variant_stats

UNSTABLE_FALL = 0.005  # val acc falling by more than 0.5 points from one epoch to the next is "unstable"
LAST_EPOCHS = 3  # how many final epochs the stability rule looks at (rising accuracy is progress, not instability)
GAP_FLAG = 0.01  # train acc above val acc by more than 1 point is worth a line


def pts(fraction: float) -> str:
    return f"{100 * fraction:.2f} points"


def observations(study: Study) -> list[str]:
    """Sentences that follow from the numbers by fixed rules, and nothing else."""
    found: list[str] = []
    stats = [(variant, variant_stats(variant)) for variant in study.variants]
    ranked = sorted((pair for pair in stats if pair[1].final_val_acc.mean is not None),
                    key=lambda pair: pair[1].final_val_acc.mean, reverse=True)
    if not ranked:
        found.append("No run completed, so there is no accuracy to compare.")
    elif len(ranked) == 1:
        only = ranked[0][1]
        found.append(f"One variant completed ({only.label}): final validation accuracy {only.final_val_acc.percent()} %.")
    else:
        (_, top), (_, second) = ranked[0], ranked[1]
        lead = top.final_val_acc.mean - second.final_val_acc.mean
        ahead = "level to 0.01 points with" if lead < 0.00005 else f"{pts(lead)} ahead of"
        sentence = (f"Highest final validation accuracy: {top.label} with {top.final_val_acc.percent()} %, "
                    f"{ahead} {second.label} ({second.final_val_acc.percent()} %).")
        spreads = [s.final_val_acc.std for s in (top, second)]
        if None in spreads:
            sentence += (" With one completed run per variant the seed-to-seed spread is unknown, so this lead alone "
                         "does not show a real difference; repeat with --seeds.")
        elif lead > max(spreads):
            sentence += f" The lead is larger than either variant's seed standard deviation (up to {pts(max(spreads))})."
        else:
            sentence += (f" The lead is within the seed standard deviation (up to {pts(max(spreads))}): these two are "
                         "not told apart by this sweep.")
        found.append(sentence)

    usable = [run for variant, _ in stats for run in variant.usable]
    window = min([LAST_EPOCHS] + [len(run.history) for run in usable])
    if window < 2:
        found.append("The runs are too short (fewer than 2 epochs) to judge the stability of validation accuracy.")
    else:
        unstable = []
        for variant, _ in stats:
            if variant.usable:
                fall = statistics.fmean(_largest_fall(run, window) for run in variant.usable)
                if fall > UNSTABLE_FALL:
                    unstable.append(f"{variant.label} ({pts(fall)})")
        rule = (f"from one epoch to the next within the last {plural(window, 'epoch')} (largest fall, mean over runs)")
        if unstable:
            found.append(f"Unstable validation accuracy: it fell by more than {pts(UNSTABLE_FALL)} {rule} for "
                         f"{', '.join(unstable)}.")
        else:
            found.append(f"No variant's validation accuracy fell by more than {pts(UNSTABLE_FALL)} {rule}.")

    gaps = [(s.label, s.final_train_acc.mean - s.final_val_acc.mean) for _, s in stats
            if s.final_train_acc.mean is not None and s.final_val_acc.mean is not None]
    if gaps:
        label, largest = max(gaps, key=lambda pair: pair[1])
        wide = [f"{name} ({pts(gap)})" for name, gap in gaps if gap > GAP_FLAG]
        if wide:
            found.append(f"Train accuracy exceeds validation accuracy by more than {pts(GAP_FLAG)} in the final "
                         f"epoch for: {', '.join(wide)}.")
        elif largest > 0:
            found.append(f"No variant's final train accuracy exceeds its validation accuracy by more than "
                         f"{pts(GAP_FLAG)}; the largest gap is {pts(largest)} ({label}).")
        else:
            found.append(f"Validation accuracy is at or above train accuracy in the final epoch for every variant "
                         f"(above it by up to {pts(-min(g for _, g in gaps))}); train accuracy is an average over an "
                         "epoch of learning, so it lags.")

    diverged = [run for run in study.runs if run.status == "diverged"]
    if diverged:
        where = [f"{run.name} (epoch {run.summary.get('diverged_at', {}).get('epoch', '?')}, "
                 f"step {run.summary.get('diverged_at', {}).get('step', '?')})" for run in diverged]
        found.append(f"{plural(len(diverged), 'run')} diverged (loss became NaN or infinite): {', '.join(where)}.")
    else:
        found.append("No run diverged.")
    pruned = [run for run in study.runs if run.status == "pruned"]
    if pruned:  # a search's own decision, not a run that failed to finish
        stops = sorted({run.summary.get("epochs_completed") for run in pruned} - {None})
        found.append(f"The search pruned {plural(len(pruned), 'trial')} as behind the others ("
                     f"{', '.join(run.name for run in pruned)}), after epoch {' or '.join(map(str, stops)) or '?'}.")
    others = [f"{run.name} ({run.status}{': ' + run.summary['message'] if run.summary.get('message') else ''})"
              for run in study.runs
              if run.status not in ("completed", "diverged", "pruned")]
    others += [f"{name} ({status}{': ' + reason if reason else ''})" for name, status, reason in study.missing]
    if others:
        found.append(f"Not finished: {'; '.join(others)}.")

    reached = [(s.label, s.target_text) for _, s in stats if s.reached_target]
    missed = [f"{v.label} (in {plural(max(len(run.history) for run in v.usable), 'epoch')})"
              for v, s in stats if s.usable and not s.reached_target]
    target = f"{100 * TARGET_ACC:g} %"
    if reached:
        found.append(f"Epochs to {target} validation accuracy: " + _listed([f"{l}: {t}" for l, t in reached]) + ".")
    if missed:
        found.append(f"Never reached {target} validation accuracy: {_listed(missed)}.")
    return found


LISTED = 8  # a sentence names at most this many variants (a search has dozens); the tables have them all


def _listed(items: list[str]) -> str:
    if len(items) <= LISTED:
        return ", ".join(items)
    return f"{', '.join(items[:LISTED])} and {len(items) - LISTED} more (see the results table)"


def _largest_fall(run: Run, window: int) -> float:
    """The largest drop in validation accuracy between consecutive epochs among the last `window`."""
    values = [row["val_acc"] for row in run.history[-window:]]
    return max([0.0] + [before - after for before, after in zip(values, values[1:])])
