"""Checkpoints of a run and resuming from them, in one place: what a resumable checkpoint holds (`state_of`),
the rules for resuming (which settings may change, which runs can go on), finding the checkpoint to go on
from, and putting a run back as it was (`restore`), best.pt included.

`checkpoint` owns the file format (saved atomically, loaded safely); this module owns what goes in it.
torch is imported only by the functions that need it: sweeps and `mnistres runs` ask the rules here
without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from mnistres.runs import rundir
from mnistres.errors import CheckpointError, ConfigError, MnistresError

# Beyond what every checkpoint holds (config, model, epoch, metrics, normalisation): what going on needs.
# With `ema`, "model" is the average (what eval loads) and "trained_model" the weights being trained.
RESUMABLE_FIELDS = ("optimizer", "scheduler", "rng", "global_step")


# --- the rules ------------------------------------------------------------------------------------


def settings(run_dir: Path, changes: Mapping[str, Any], other_options: Iterable[str] = ()) -> dict[str, Any]:
    """The settings to resume the run in `run_dir` with: its own, with only execution keys changed
    (`changes`: key -> value, None for not given). `other_options` names command-line options given
    beside --resume, which it refuses."""
    if list(other_options):
        raise ConfigError("--resume continues a run with its own settings: leave out --config, --preset, --set, "
                          "--callback and --overwrite")
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).is_file():
        raise ConfigError(f"{run_dir} holds no run to resume (no {rundir.CONFIG})")
    stored = rundir.read_config(run_dir / rundir.CONFIG)
    given = {key: value for key, value in changes.items() if value is not None}
    bad = sorted(set(given) - set(rundir.EXECUTION_KEYS))
    if bad:
        raise ConfigError(f"--resume continues a run with its own settings; only {', '.join(rundir.EXECUTION_KEYS)} "
                          f"may change (not {', '.join(bad)})")
    return {**stored, **given, "name": run_dir.name, "out_dir": str(run_dir.parent)}


def resume_config(run_dir: str | Path, *, other_options: Iterable[str] = (), **execution: Any) -> Any:
    """The RunConfig of the run in `run_dir`, with only execution keys (device, threads, data folder)
    changed, for `train(..., resume=True)`; the rules are `settings`'."""
    from mnistres.config import from_dict

    run_dir = Path(run_dir)
    return from_dict(settings(run_dir, execution, other_options), origin=str(run_dir / rundir.CONFIG))


def require_last(run_dir: Path) -> Path:
    """last.pt, the checkpoint a resumed run goes on from; refused when no epoch finished."""
    if not (run_dir / rundir.LAST).is_file():
        status = rundir.stored_status(run_dir)
        if status in rundir.FINISHED:  # `mnistres runs gc` removed it: it was never needed again
            refuse_finished(run_dir, status, f" ({rundir.LAST} was removed by `mnistres runs gc`; {rundir.BEST} "
                                             f"keeps its model)")
        when = "before its first epoch ended" if status == "interrupted" else "before any epoch finished"
        raise ConfigError(f"{run_dir} has no {rundir.LAST}: it stopped {when}, so there is nothing to resume; "
                          f"run it again with --overwrite")
    return run_dir / rundir.LAST


def check(run_dir: Path, stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """May the run whose last.pt was trained with `stored` settings go on with `wanted`? Only execution
    keys may differ, and it must not be recorded as completed (one whose last epoch is saved but whose
    end was not recorded is finished by resuming it)."""
    stored = rundir.with_added(stored)
    changed = sorted(k for k in wanted
                     if k not in rundir.PLACE_KEYS + rundir.EXECUTION_KEYS and stored.get(k) != wanted[k])
    if changed:
        raise ConfigError(f"{run_dir}/{rundir.LAST} was trained with other settings ({', '.join(changed)}); "
                          f"--resume continues a run with its own")
    refuse_finished(run_dir, rundir.stored_status(run_dir))
    # Not completed though its last epoch is saved: stopped before the run's end was recorded; resuming
    # trains nothing and finishes it (its mistakes, its summary).


def refuse_finished(run_dir: Path, status: str, more: str = "") -> None:
    """A run that ended (completed, diverged, pruned) is not resumed: say why."""
    if status == "diverged":
        raise ConfigError(f"{run_dir} diverged; resuming would diverge again. Start anew with other settings{more}")
    if status == "completed":
        raise ConfigError(f"{run_dir} has already completed: nothing to resume{more}")
    if status == "pruned":
        raise ConfigError(f"{run_dir} was pruned by its tune study as not promising: nothing to resume{more}")


def resumable(run_dir: Path, config: Mapping[str, Any]) -> bool:
    """An earlier run of `config` in `run_dir` stopped part-way (UNFINISHED) after at least one epoch:
    go on from there. One stopped after its last epoch was saved but before its end was recorded is
    resumable too: resuming trains nothing and finishes it, as `train --resume` does."""
    if rundir.earlier_status(run_dir, config) not in rundir.UNFINISHED or not (run_dir / rundir.LAST).is_file():
        return False
    try:
        done = len(rundir.read_history(run_dir / rundir.METRICS))
    except MnistresError:
        return False
    return 0 < done <= int(config.get("epochs") or 0)


# --- the checkpoint -------------------------------------------------------------------------------


def state_of(trainer: Any, logs: Mapping[str, Any]) -> dict[str, Any]:
    """What last.pt (and best.pt, its copy) holds at the end of an epoch: the weights eval, predict and export
    load, and everything a resumed run needs to go on as if never stopped."""
    import torch

    import mnistres
    from mnistres.train import devices

    rng = {"torch": torch.get_rng_state(), "shuffle": trainer.shuffle_generator.get_state()}
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    return {
        "mnistres_version": mnistres.__version__,
        "config": trainer.config.to_dict(),
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "metrics": dict(logs),
        "normalisation": [trainer.data.mean, trainer.data.std],
        "model": trainer.evaluated.state_dict(),  # what eval, predict and export load
        **({"trained_model": trainer.model.state_dict()} if trainer.average is not None else {}),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "rng": rng,
        "plugins": trainer.provenance,  # so that eval can say which plugin a missing name came from
        "precision": devices.precision_name(trainer.amp),  # what amp=auto chose: eval and --resume keep it
    }


def load_point(run_dir: Path, config: Any) -> dict[str, Any]:
    """The checkpoint to go on from: last.pt of this very config, not yet finished."""
    from mnistres.train import checkpoint

    saved = checkpoint.load(require_last(run_dir))
    check(run_dir, dict(saved.get("config", {})), config.to_dict())
    for key in RESUMABLE_FIELDS + (("trained_model",) if config.ema > 0 else ()):
        if key not in saved:
            raise CheckpointError(f"{run_dir}/{rundir.LAST} lacks '{key}'; it cannot be resumed")
    return saved


def restore(trainer: Any, saved: Mapping[str, Any]) -> int:
    """Put model, optimizer, schedule, random streams and the step count back as they were at the end of the
    checkpoint's epoch (`state_of`'s counterpart); the epoch it holds."""
    import torch

    try:
        if trainer.average is not None:
            trainer.model.load_state_dict(saved["trained_model"])
            trainer.average.model.load_state_dict(saved["model"])
        else:
            trainer.model.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.scheduler.load_state_dict(saved["scheduler"])
        rng = saved["rng"]
        torch.set_rng_state(rng["torch"])
        trainer.shuffle_generator.set_state(rng["shuffle"])
        if trainer.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], trainer.device)
        trainer.global_step = int(saved["global_step"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{trainer.run_dir / rundir.LAST} does not fit this run, so it cannot be resumed: "
                              f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}") from None
    return int(saved["epoch"])


def history_until(run_dir: Path, done: int) -> list[dict[str, Any]]:
    """The epochs of metrics.jsonl up to `done`, the epoch last.pt holds; they must all be there."""
    history = [row for row in rundir.read_history(run_dir / rundir.METRICS) if row["epoch"] <= done]
    if [row["epoch"] for row in history] != list(range(1, done + 1)):
        raise ConfigError(f"{run_dir}/metrics.jsonl does not match last.pt (epoch {done}); cannot resume")
    return history


def best_needs_copy(run_dir: Path, best: Mapping[str, Any], done: int) -> bool:
    """Whether best.pt must become a copy of last.pt, because a crash cut its writing short.

    best.pt is written right after last.pt in the same epoch, so when it is missing (or older) the best
    epoch is the one last.pt holds, and copying it restores it; any other mismatch cannot be repaired.
    """
    from mnistres.train import checkpoint

    path = run_dir / rundir.BEST
    try:
        holds = checkpoint.load(path).get("epoch") if path.is_file() else None
    except CheckpointError:
        holds = None
    if not best or holds == best["epoch"]:
        return False
    if best["epoch"] != done:
        raise CheckpointError(f"{path} should hold epoch {best['epoch']} (the best so far) but "
                              f"{'holds epoch ' + str(holds) if holds else 'is missing'}, and that epoch's weights "
                              f"are gone; start the run again with --overwrite")
    return True
