"""One training run, top to bottom: config -> seed/device -> data -> model -> optimizer -> loop.

Everything the run produces goes to its run directory (`rundir` owns its layout and rules):
config.yaml, metrics.jsonl (one line per epoch), summary.json, last.pt and best.pt.
"""

from __future__ import annotations

import io
import itertools
import math
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

import mnistres
from mnistres import atomic, checkpoint, data as data_module, devices, distributed, interrupts, metrics, mistakes, rundir
from mnistres import model as model_module
from mnistres.api import Callback
from mnistres.config import RunConfig
from mnistres.ema import WeightAverage
from mnistres.errors import CheckpointError, ConfigError, MnistresError, PluginError, WriteError, reason
from mnistres.interrupts import Interrupted, deferred, shielded, sigterm_as_interrupt
from mnistres.lock import Lock
from mnistres.registry import callbacks as callback_registry, optimizers, schedulers
from mnistres.resolve import Resolved, resolve
# The batch order gets its own stream of random numbers, apart from the subset/hold-out draw.
SHUFFLE_SEED_OFFSET = 1_000_003


@dataclass
class RunResult:
    run_dir: Path
    status: str  # completed | diverged | interrupted | failed
    message: str  # why it stopped, when not simply completed
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def train(config: RunConfig | Resolved, *, console: Any = None, extra_callbacks: Iterable[Callback] = (),
          overwrite: bool = False, resume: bool = False, attempt: str = "") -> RunResult:
    """Run one training run as `config` describes; the library's entry point.

    With `resume`, continue the interrupted run in OUT_DIR/NAME from its last completed epoch
    (see `resume_config`); the result equals that of a run never interrupted. A config already
    resolved (`resolve.resolve`) is not looked up again. `attempt` (any text) is recorded in
    summary.json, so that whoever started the run can tell its outcome from an earlier one's.
    """
    return Trainer(config, console=console, extra_callbacks=extra_callbacks, overwrite=overwrite,
                   resume=resume, attempt=attempt).fit()


def resume_config(run_dir: str | Path, *, other_options: Iterable[str] = (), **execution: Any) -> RunConfig:
    """The config of the run in `run_dir`, with only execution keys (device, threads, data
    folder) changed, for `train(..., resume=True)`; the rules are `rundir.resume_settings`'s."""
    from mnistres.config import from_dict

    run_dir = Path(run_dir)
    return from_dict(rundir.resume_settings(run_dir, execution, other_options), origin=str(run_dir / rundir.CONFIG))


def run_directory(config: RunConfig, overwrite: bool) -> Path:
    """Where the run goes, checked before any work: nobody is writing there, it holds no earlier
    run (unless `overwrite`), and it can be created and written."""
    run_dir = Path(config.out_dir) / (config.name or rundir.default_name(
        config.dataset, config.activation, config.optimizer, config.lr, config.batch_size))
    atomic.check_place(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder")
    Lock(run_dir).check()
    if not overwrite:
        rundir.refuse_earlier_run(run_dir)
    return run_dir


class Trainer:
    """Holds the state that callbacks see: config, model, optimizer, epoch, step, console."""

    def __init__(self, config: RunConfig | Resolved, *, console: Any = None, extra_callbacks: Iterable[Callback] = (),
                 overwrite: bool = False, resume: bool = False, attempt: str = "") -> None:
        if console is None:
            from mnistres.display import console as make_console

            console = make_console()
        # Every registry name resolved before any work (once: a sweep hands in its resolved points).
        self.resolved = config if isinstance(config, Resolved) else resolve(config)
        self.config, self.console, self.overwrite, self.resume = self.resolved.config, console, overwrite, resume
        self.extra_callbacks = list(extra_callbacks)
        self.attempt = attempt
        self.epoch = 0  # current epoch, from 1
        self.global_step = 0
        self.stop_reason = ""  # set by a callback (e.g. early stopping) to end after this epoch
        self.val_confusion: list[list[int]] = []
        self.batch_loss: torch.Tensor | None = None
        self.world = distributed.World()  # the processes of the run (one, unless torchrun started several)
        self.average: WeightAverage | None = None  # the weights' moving average, when `ema` is on
        self.history: list[dict[str, Any]] = []  # the epochs logged so far (a resumed run's earlier ones too)

    # --- the run, top to bottom ---------------------------------------------------------

    def fit(self) -> RunResult:
        # Under torchrun the processes meet first: from then on a mistake found by any of them ends
        # them all (`distributed.together`), instead of leaving the others waiting.
        world = distributed.launched()
        if world.several:
            world = distributed.join(world, distributed.device(self.config.device, world))
        self.world = world
        if not world.main:
            from mnistres.display import console as make_console

            self.console = make_console(file=io.StringIO())  # only rank 0 prints
        try:
            return self._fit()
        except RuntimeError as error:
            lost = distributed.lost_rank(error, world)  # a rank killed: one line, not gloo's traceback
            if lost is None:
                raise
            raise lost from error
        finally:
            distributed.leave(world)

    def _fit(self) -> RunResult:
        config, resolved, world = self.config, self.resolved, self.world
        document: dict[str, Any] | None = None
        run_dir = Path()
        with distributed.together(world):
            # Every rank must run what rank 0 runs (and records in config.yaml).
            distributed.check_alike(rundir.result_settings(config.to_dict()), world)
            if self.resume:
                run_dir = Path(config.out_dir) / str(config.name)
                if world.main:
                    atomic.check_place(run_dir)  # as a new run's is: before any data is loaded
                    Lock(run_dir).check()
                document = self.resume_point(run_dir)  # every rank loads last.pt
            elif world.main:
                run_dir = run_directory(config, self.overwrite)
        # A new run's name may hold the time: rank 0's is the run's.
        self.run_dir = run_dir = Path(distributed.first_text(str(run_dir) if world.main else "", world))
        started, clock = datetime.now(timezone.utc), time.perf_counter()

        root = data_module.resolve_data_dir(config.data_dir)
        if world.several:  # downloads: rank 0 first, then one process on each other machine, then all read
            with distributed.together(world):
                if world.main:
                    data_module.ensure_files(config.dataset, root, config.download)
            with distributed.together(world):
                if world.local_rank == 0 and not world.main:
                    data_module.ensure_files(config.dataset, root, config.download)
        with distributed.together(world):
            self.prepare(root)
        self.model.to(device=self.device, memory_format=self.memory_format)
        train_forward = self.model
        if world.several:
            if config.sync_bn:
                distributed.globalise_batchnorm(self.model)
            from torch.nn.parallel import DistributedDataParallel

            train_forward = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.forward = torch.compile(train_forward) if config.compile else train_forward
        # The model that is evaluated and saved: the trained one, or the average of its weights.
        self.average = WeightAverage(self.model, config.ema) if config.ema > 0 else None
        self.evaluated = self.average.model if self.average is not None else self.model
        # Evaluation needs no gradient exchange: the plain model, on this rank's share of the images.
        self.eval_forward = self.evaluated if world.several or self.average is not None else self.forward
        self.optimizer = optimizers.build(resolved.optimizer, self.model.parameters(), lr=config.lr)
        self.scheduler = schedulers.build(resolved.schedule, self.optimizer, lr=config.lr, epochs=config.epochs,
                                          steps_per_epoch=self.steps_per_epoch)

        # Only now, with data, model and optimizer ready, does anything reach the disk; and only
        # while this process holds the run directory's lock (rank 0: the one that writes).
        lock = Lock(run_dir)
        with distributed.together(world):
            if world.main:
                try:
                    run_dir.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise WriteError(f"cannot create run directory {run_dir}: {reason(error)}") from None
                lock.acquire()
        try:
            return self._run(run_dir, document, started, clock)
        finally:
            if world.main:
                lock.release()

    def prepare(self, root: Path) -> None:
        """Threads, device, data, batches, model and the callbacks: everything before the first step
        (no collective operation in here: `together` wraps it)."""
        config, resolved, world = self.config, self.resolved, self.world
        devices.set_threads(config.threads)
        self.device = device = distributed.device(config.device, world)
        self.amp = devices.amp_dtype(config.amp, device)
        torch.manual_seed(config.seed)

        self.data = data = data_module.prepare(
            config.dataset, root, download=config.download, train_size=config.train_size,
            val_split=config.val_split, seed=config.seed, device=device,
        )
        if config.batch_size > len(data.train):
            raise ConfigError(f"batch_size={config.batch_size} is larger than the {len(data.train):,} training images")
        if config.batch_size % world.size:
            raise ConfigError(f"batch_size={config.batch_size} (the global batch) does not divide among the "
                              f"{world.size} processes; use a multiple of {world.size}")
        self.shuffle_generator = torch.Generator().manual_seed(config.seed + SHUFFLE_SEED_OFFSET)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.train_batches = data_module.Batches(
            data.train, config.batch_size, mean=data.mean, std=data.std, shuffle=True,
            generator=self.shuffle_generator, augment=config.augment,
            warp=data_module.Warp(config.rotate, config.zoom, config.translate, config.elastic, config.elastic_sigma),
            channels_last=config.channels_last, world=world,
        )
        part = distributed.share(len(data.val), world)  # each rank evaluates its share; the sums are added
        self.val_batches = data_module.Batches(
            data_module.Split(data.val.images[part], data.val.labels[part]), metrics.eval_batch_size(device),
            mean=data.mean, std=data.std, channels_last=config.channels_last)
        self.steps_per_epoch = len(self.train_batches)
        # Batches of batch_size images (counted over the whole run, so a resumed run agrees) trained at low_res.
        self.low_res_steps = round(config.low_res_epochs * self.steps_per_epoch) if config.low_res else 0
        # Batches of batch_size images that one low-resolution step takes (low_res_batch_size is a multiple).
        self.low_res_merge = max(1, config.low_res_batch_size // config.batch_size)

        self.model = model_module.from_config(resolved)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp is torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        # Several processes add up their shares' losses, then scale to the global batch's mean.
        self.criterion_sum = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing, reduction="sum")
        self.callbacks = [callback_registry.build(spec) for spec in resolved.callbacks] + self.extra_callbacks
        # Who wrote each callback, for an error message if one of its hooks raises.
        self.callback_names = [f"callback '{spec}' (from {callback_registry.get(spec.name).source})"
                               for spec in resolved.callbacks] + [type(c).__name__ for c in self.extra_callbacks]
        self.provenance = resolved.provenance()
        self.outputs = self.declared_outputs()

    def declared_outputs(self) -> list[str]:
        """The files and folders the callbacks say they write in the run directory (`Callback.outputs`)."""
        names: set[str] = set()
        for callback, name in zip(self.callbacks, self.callback_names):
            declared = getattr(callback, "outputs", None)
            for output in declared() if callable(declared) else ():
                problem = rundir.output_problem(output)
                if problem:
                    raise PluginError(f"{name} declares an output mnistres will not clear: {problem}")
                names.add(str(output))
        return sorted(names)

    def open_run_file(self, name: str, mode: str = "w") -> Any:
        """A text file in the run directory for a callback (`api.TrainerState.open_run_file`)."""
        return atomic.open_text(self.run_dir / name, mode)

    def _run(self, run_dir: Path, document: dict[str, Any] | None, started: datetime, clock: float) -> RunResult:
        """The loop, with the run directory locked: files, epochs, summary."""
        config, world = self.config, self.world
        main = world.main
        history: list[dict[str, Any]] = []
        best: dict[str, Any] = {}
        with distributed.together(world):
            if main:
                if document is None and not self.overwrite:
                    rundir.refuse_earlier_run(run_dir)  # another writer may have finished a run here while we loaded data
                rundir.clear(run_dir, earlier_run=self.overwrite, outputs=self.outputs)
            if document is not None:
                history, best = self.restore(document)
            self.history = history  # what callbacks see: a resumed run's earlier epochs, then each new one
            if main:
                rundir.write_config(run_dir, config.to_dict())
                # Until it ends, the run says that it runs, and where: a summary still saying so later, with nobody
                # holding the lock, is a run that was killed (resumable, like an interrupted one).
                rundir.write_summary(run_dir, {"status": "running", "message": "", "epochs_completed": len(history),
                                               "epochs_planned": config.epochs,
                                               "started": started.isoformat(timespec="seconds"),
                                               "device": devices.describe(self.device),
                                               "distributed": world.describe(), "outputs": self.outputs,
                                               **rundir.writer(self.attempt)})

        status, message = "completed", ""
        error_in_flight = False
        self._emit("on_train_begin")
        # SIGTERM stops the run like Ctrl-C; several processes stop together, at a step they agree on.
        with interrupts.signals_as_flag() if world.several else sigterm_as_interrupt() as flag, \
                interrupts.output_as_flag(flag or interrupts.Flag()) as self.interrupt_flag:
            try:
                for epoch in range(len(history) + 1, config.epochs + 1):
                    self.epoch = epoch
                    self._emit("on_epoch_begin", epoch)
                    logs = self.train_epoch(self.train_batches)
                    if logs is None:  # non-finite loss
                        status, message = "diverged", self.divergence_message()
                        break
                    eval_start = time.perf_counter()
                    if config.precise_bn > 0:
                        model_module.refresh_batchnorm(self.evaluated, self.refresh_batches(epoch), self.amp)
                    logs["val_loss"], logs["val_acc"], self.val_confusion = metrics.measure(
                        self.eval_forward, self.val_batches, self.amp, world)
                    logs["eval_seconds"] = time.perf_counter() - eval_start
                    with distributed.together(world):
                        self._emit("on_epoch_end", epoch, logs)
                        history.append(logs)
                        if main:
                            rundir.write_history(run_dir, history)
                            self.save(run_dir / rundir.LAST, logs)
                        if not best or logs["val_acc"] > best["val_acc"]:
                            best = {"epoch": epoch, "val_acc": logs["val_acc"], "val_loss": logs["val_loss"]}
                            if main:
                                self.copy_to_best(run_dir)
                    self.stop_reason = distributed.first_text(self.stop_reason, world)  # stop early together
                    # After the last epoch nothing is left to save for later: a flag raised now (a signal
                    # after the last step, the output closed while the epoch's line was printed) lets the run
                    # complete. Every process knows the epoch, so they all decide alike.
                    if epoch < config.epochs and distributed.any_flag(self.interrupt_flag.raised, world):
                        raise interrupts.stop(self.interrupt_flag)
                    if self.stop_reason:
                        message = self.stop_reason
                        break
                if status == "completed" and main:
                    self.record_mistakes(run_dir)
            except KeyboardInterrupt as stop:
                # last.pt keeps the last completed epoch: a consistent point to go on from.
                error_in_flight = True
                saved = 0 < self.epoch <= len(history)  # stopped at the end of an epoch, once it was saved
                status, message = "interrupted", f"interrupted {'after' if saved else 'during'} epoch {self.epoch}"
                hint = rundir.resume_hint(run_dir)
                if isinstance(stop, interrupts.OutputClosed):
                    message, hint = f"{message}: {stop}", f"{stop}; {hint}"
                raise Interrupted(hint) from None
            except WriteError as error:
                error_in_flight = True
                status, message = "failed", str(error)
                raise WriteError(f"{error}; the run is marked failed: {rundir.resume_hint(run_dir)}") from error
            except BaseException as error:
                error_in_flight = True
                lost = distributed.lost_rank(error, world)
                if lost is not None:  # another rank is gone: the run failed for that reason, and is resumable
                    status, message = "failed", str(lost)
                    raise distributed.RankLost(f"{lost}; {rundir.resume_hint(run_dir)} (under torchrun, "
                                               f"as it was started)") from error
                status, message = "failed", str(error) if isinstance(error, MnistresError) else \
                    f"{type(error).__name__}: {error}"
                raise
            finally:
                # A Ctrl-C now waits until summary.json says how the run ended; once the run is being
                # interrupted, further signals (a second Ctrl-C, a second SIGTERM that was already on its
                # way) are dropped, so that they cannot cut the recording of the interruption short.
                with shielded() if status == "interrupted" else deferred():
                    summary = self.summarise(status, message, history, best, started, time.perf_counter() - clock)
                    try:
                        if main:
                            rundir.write_summary(run_dir, summary)
                    except WriteError:
                        if not error_in_flight:
                            raise
                        # The error already on its way says what went wrong; summary.json keeps its last state.
                    self._emit("on_train_end", status)
        return RunResult(run_dir, status, message, history, summary)

    def record_mistakes(self, run_dir: Path) -> None:
        """mistakes.npz: the final model's most confident mistakes on the validation images, for the
        report to show without loading a checkpoint. One more pass over all of them, on this process
        alone (in evaluation mode no layer talks to the other processes)."""
        val = self.data.val
        batches = data_module.Batches(val, metrics.eval_batch_size(self.device), mean=self.data.mean,
                                      std=self.data.std, channels_last=self.config.channels_last)
        probabilities = metrics.probabilities(self.eval_forward, batches, self.amp)
        dataset = self.config.dataset
        source = f"the {dataset} test file" if self.data.val_name == "test" else \
            f"the held-out part of the {dataset} training file"
        found = mistakes.select(probabilities.numpy(), val.labels.cpu().numpy(), val.images[:, 0].cpu().numpy(),
                                source=source, positions=None if val.positions is None else val.positions.numpy())
        rundir.write_mistakes(run_dir, found)

    def copy_to_best(self, run_dir: Path) -> None:
        """best.pt becomes a copy of last.pt (the epoch just saved)."""
        with atomic.replacing(run_dir / rundir.BEST) as temp:
            shutil.copyfile(run_dir / rundir.LAST, temp)

    # --- resuming ------------------------------------------------------------------------

    def resume_point(self, run_dir: Path) -> dict[str, Any]:
        """The checkpoint to go on from: last.pt of this very config, not yet finished."""
        document = checkpoint.load(rundir.require_last(run_dir))
        rundir.check_resume(run_dir, dict(document.get("config", {})), self.config.to_dict())
        for key in ("optimizer", "scheduler", "rng", "global_step") + (("trained_model",) if self.config.ema > 0 else ()):
            if key not in document:
                raise CheckpointError(f"{run_dir}/{rundir.LAST} lacks '{key}'; it cannot be resumed")
        return document

    def restore(self, document: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Put model, optimizer, schedule, random streams and the history back as they were
        at the end of the checkpoint's epoch, and best.pt as the history says it is."""
        last = self.run_dir / rundir.LAST
        try:
            if self.average is not None:
                self.model.load_state_dict(document["trained_model"])
                self.average.model.load_state_dict(document["model"])
            else:
                self.model.load_state_dict(document["model"])
            self.optimizer.load_state_dict(document["optimizer"])
            self.scheduler.load_state_dict(document["scheduler"])
            rng = document["rng"]
            torch.set_rng_state(rng["torch"])
            self.shuffle_generator.set_state(rng["shuffle"])
            if self.device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state(rng["cuda"], self.device)
            self.global_step = int(document["global_step"])
        except (RuntimeError, ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"{last} does not fit this run, so it cannot be resumed: "
                                  f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}") from None
        done = int(document["epoch"])
        history = [row for row in rundir.read_history(self.run_dir / rundir.METRICS) if row["epoch"] <= done]
        if [row["epoch"] for row in history] != list(range(1, done + 1)):
            raise ConfigError(f"{self.run_dir}/metrics.jsonl does not match last.pt (epoch {done}); cannot resume")
        best: dict[str, Any] = {}
        for row in history:
            if not best or row["val_acc"] > best["val_acc"]:
                best = {"epoch": row["epoch"], "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
        self.recover_best(best, done)
        return history, best

    def recover_best(self, best: dict[str, Any], done: int) -> None:
        """Make best.pt the checkpoint of the best epoch so far, if a crash cut its writing short.

        best.pt is written right after last.pt in the same epoch, so when it is missing (or older)
        the best epoch is the one last.pt holds, and copying it restores it.
        """
        path = self.run_dir / rundir.BEST
        try:
            holds = checkpoint.load(path).get("epoch") if path.is_file() else None
        except CheckpointError:
            holds = None
        if not best or holds == best["epoch"]:
            return
        if not self.world.main:
            return  # rank 0 repairs it
        if best["epoch"] != done:
            raise CheckpointError(f"{path} should hold epoch {best['epoch']} (the best so far) but "
                                  f"{'holds epoch ' + str(holds) if holds else 'is missing'}, and that epoch's weights "
                                  f"are gone; start the run again with --overwrite")
        self.copy_to_best(self.run_dir)

    def train_epoch(self, batches: data_module.Batches) -> dict[str, Any] | None:
        """One pass over the training images; None if the loss stopped being finite."""
        model, optimizer, device, world = self.model, self.optimizer, self.device, self.world
        model.train()
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0
        # Reading a value from the device waits for it; on the CPU that costs nothing, on a GPU
        # it would stall the queue every step, so there we look every 50 steps.
        check_every = 1 if device.type == "cpu" else 50
        lr = optimizer.param_groups[0]["lr"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        updates = 0  # optimizer steps this epoch
        for step, taken, x, y, whole in self.steps(batches):
            with devices.autocast(device, self.amp):
                logits = self.forward(x)
                if world.several:
                    # This rank's share of the global batch: its loss sum, scaled so that DDP's average of
                    # the gradients over the ranks is the gradient of the global batch's mean loss.
                    share_sum = self.criterion_sum(logits.float(), y)
                    loss = share_sum * (world.size / whole)
                else:
                    loss = self.criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            for _ in range(taken):  # the schedule (and global_step) counts batches of batch_size images
                self.scheduler.step()
            self.global_step += taken
            if self.average is not None:
                self.average.update(self.global_step)
            if world.several:
                self.batch_loss = share_sum.detach() / max(y.numel(), 1)
                self.loss_sum += share_sum.detach()
            else:
                self.batch_loss = loss.detach()
                self.loss_sum += self.batch_loss * y.numel()
            self.correct += (logits.argmax(1) == y).sum()
            self.seen += y.numel()
            updates += 1
            if updates % check_every == 0 or step == len(batches):
                if not self.check_step():
                    self.diverged_at = (self.epoch, step, lr)
                    return None
            self._emit("on_batch_end", step)
        loss_sum, correct, seen = float(self.loss_sum), int(self.correct), self.seen  # the epoch's one sync
        if world.several:
            totals = distributed.all_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64), world)
            loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
        seconds = time.perf_counter() - start
        return {
            "epoch": self.epoch,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "lr": lr,
            "seconds": seconds,
            "images_per_s": seen / seconds,
            # On the CPU the thread count is part of the numbers: each epoch says what it ran with (a run
            # resumed with other --threads mixes them, and its summary's numerics name only the last).
            **({"threads": torch.get_num_threads()} if device.type == "cpu" else {}),
        }

    def steps(self, batches: data_module.Batches) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, int]]:
        """This epoch's training steps as (batches used so far, batches in this step, inputs, labels, images in
        the global step). A step is one batch of batch_size images; a low-resolution step takes up to
        low_res_batch_size images (several batches, never past the last low-resolution one), each batch's
        windows drawn for it as they would be alone. Read lazily: the low-resolution test sees global_step
        as the previous step left it."""
        units, step = iter(batches), 0
        images, batch_size = len(self.data.train), self.config.batch_size
        while True:
            low = self.global_step < self.low_res_steps
            size = min(self.low_res_merge, self.low_res_steps - self.global_step) if low else 1
            taken = list(itertools.islice(units, size))
            if not taken:
                return
            # Each batch's global size (this rank holds a share of it).
            wholes = [min(batch_size, images - (step + i) * batch_size) for i in range(len(taken))]
            if low:
                taken = [(self.low_res_inputs(x, whole), y) for (x, y), whole in zip(taken, wholes)]
            if len(taken) == 1:
                x, y = taken[0]
            else:
                x = torch.cat([x for x, _ in taken]).contiguous(memory_format=self.memory_format)
                y = torch.cat([y for _, y in taken])
            step += len(taken)
            yield step, len(taken), x, y, sum(wholes)

    def low_res_inputs(self, x: torch.Tensor, whole: int) -> torch.Tensor:
        """This step's inputs at low_res: shrunk, or a random window of each (drawn for the `whole` global batch,
        with the batch order's generator, so a resumed run and several processes draw what one run draws)."""
        if self.config.low_res_mode == "crop":
            return data_module.random_crop(x, self.config.low_res, self.shuffle_generator, whole=whole,
                                           part=distributed.share(whole, self.world))
        return data_module.shrink(x, self.config.low_res)

    def check_step(self) -> bool:
        """Whether the loss is still finite. With several processes the answer is shared, and so is a
        Ctrl-C or SIGTERM that any of them received: all of them stop at this same step."""
        if not self.world.several:
            return bool(torch.isfinite(self.loss_sum))
        flag = torch.tensor(float(self.interrupt_flag.raised), device=self.loss_sum.device)
        shared = distributed.all_sum(torch.stack([self.loss_sum.float(), flag]), self.world).tolist()
        if shared[1] > 0:
            raise interrupts.stop(self.interrupt_flag)
        return math.isfinite(shared[0])

    def refresh_batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented training batches for precise BN, `precise_bn` images in an order fixed by seed and
        epoch (its own generator, so the training order does not depend on it). With BatchNorm over the
        global batch each rank takes its share of every batch; otherwise every rank refreshes on all."""
        size = min(512, self.config.precise_bn)
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        world = self.world if self.config.sync_bn else None
        batches = data_module.Batches(self.data.train, size, mean=self.data.mean, std=self.data.std, shuffle=True,
                                      generator=generator, channels_last=self.config.channels_last, world=world)
        return itertools.islice(batches, math.ceil(self.config.precise_bn / size))

    def running_metrics(self) -> tuple[float, float, int]:
        """Loss, accuracy and images so far in this epoch (waits for the device)."""
        seen = max(self.seen, 1)
        return float(self.loss_sum) / seen, int(self.correct) / seen, self.seen

    def divergence_message(self) -> str:
        epoch, step, lr = self.diverged_at
        where = f"at epoch {epoch}, step {step}" if self.device.type == "cpu" else f"in epoch {epoch}, by step {step}"
        return (f"training loss became NaN/inf {where} (lr {lr:g}); the run stopped. "
                f"Try a lower --lr (e.g. {self.config.lr / 10:g}) or a warm-up schedule (--schedule onecycle)")

    # --- files ---------------------------------------------------------------------------

    def save(self, path: Path, logs: dict[str, Any]) -> None:
        rng = {"torch": torch.get_rng_state(), "shuffle": self.shuffle_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        checkpoint.save(path, {
            "mnistres_version": mnistres.__version__,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "metrics": dict(logs),
            "normalisation": [self.data.mean, self.data.std],
            "model": self.evaluated.state_dict(),  # what eval, predict and export load
            **({"trained_model": self.model.state_dict()} if self.average is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "plugins": self.provenance,  # so that eval can say which plugin a missing name came from
        })

    def summarise(self, status: str, message: str, history: list[dict[str, Any]], best: dict[str, Any],
                  started: datetime, wall: float) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "status": status,
            "message": message,
            "epochs_completed": len(history),
            "epochs_planned": self.config.epochs,
            "final": history[-1] if history else {},
            "best": best,
            "val_set": self.data.val_name,
            "train_images": len(self.data.train),
            "val_images": len(self.data.val),
            "per_class": metrics.class_metrics(self.val_confusion) if self.val_confusion else [],
            "confusion_matrix": self.val_confusion,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "train_seconds": sum(row["seconds"] for row in history),
            "wall_seconds": wall,
            "started": started.isoformat(timespec="seconds"),
            **rundir.writer(self.attempt),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": devices.describe(self.device),
            "versions": versions(),
            "numerics": devices.numerics(self.device, self.amp),
            "plugins": self.provenance,
            "distributed": {**self.world.describe(), "sync_bn": self.config.sync_bn},
            "outputs": self.outputs,  # what the callbacks wrote here: --overwrite clears it
        }
        if status == "diverged":
            epoch, step, lr = self.diverged_at
            summary["diverged_at"] = {"epoch": epoch, "step": step, "lr": lr}
        return summary

    def _emit(self, hook: str, *args: Any) -> None:
        for callback, name in zip(self.callbacks, self.callback_names):
            try:
                getattr(callback, hook)(self, *args)
            except MnistresError:
                raise
            except Exception as error:  # a plugin's bug: say whose, in one line (--debug shows the traceback)
                raise PluginError(f"{name} raised in {hook}: {type(error).__name__}: {error}") from error


def versions() -> dict[str, str]:
    import torchvision

    return {"mnistres": mnistres.__version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}

