"""One training run, top to bottom: config -> seed/device -> data -> model -> optimizer -> loop.

`Trainer` is the loop and what callbacks see (`api.TrainerState`); the run's files are written by its
record (`record.RunRecord`: config.yaml, metrics.jsonl, summary.json, last.pt, best.pt, mistakes.npz),
what a checkpoint holds and resuming from it are `resume`'s, and how batches become steps is `steps`'.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from mnistres.train import assemble, data as data_module, devices, distributed, metrics, record as record_module
from mnistres.core import interrupts
from mnistres.core.wording import plural
from mnistres.train import model as model_module, resume as resume_module
from mnistres.runs import about, rundir
from mnistres.api import Callback
from mnistres.config import RunConfig
from mnistres.train.ema import WeightAverage
from mnistres.errors import MnistresError, PluginError, WriteError, reason
from mnistres.core.interrupts import Interrupted, deferred, shielded, sigterm_as_interrupt
from mnistres.core.lock import Lock
from mnistres.resolve import Resolved, resolve
from mnistres.train.resume import resume_config  # noqa: F401 - its public place since before `resume` existed
from mnistres.train.steps import Step, Steps, refresh_batches

__all__ = ["RunResult", "Trainer", "resume_config", "train"]


@dataclass
class RunResult:
    run_dir: Path
    status: str  # completed | diverged | pruned | interrupted | failed
    message: str  # why it stopped, when not simply completed
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def train(config: RunConfig | Resolved, *, console: Any = None, extra_callbacks: Iterable[Callback] = (),
          overwrite: bool = False, resume: bool = False, attempt: str = "", tags: Iterable[str] = (),
          note: Optional[str] = None) -> RunResult:
    """Run one training run as `config` describes; the library's entry point.

    With `resume`, continue the interrupted run in OUT_DIR/NAME from its last completed epoch
    (see `resume_config`); the result equals that of a run never interrupted. A config already
    resolved (`resolve.resolve`) is not looked up again. `attempt` (any text) is recorded in
    summary.json, so that whoever started the run can tell its outcome from an earlier one's. `tags` and
    `note` go into its about.yaml (added to a resumed run's; `runs.about`).
    """
    return Trainer(config, console=console, extra_callbacks=extra_callbacks, overwrite=overwrite,
                   resume=resume, attempt=attempt, tags=tags, note=note).fit()


class Trainer:
    """The loop: epochs, steps, evaluation, hooks, divergence and interrupts; what callbacks see."""

    def __init__(self, config: RunConfig | Resolved, *, console: Any = None, extra_callbacks: Iterable[Callback] = (),
                 overwrite: bool = False, resume: bool = False, attempt: str = "", tags: Iterable[str] = (),
                 note: Optional[str] = None) -> None:
        # What the user says about the run, checked before any work; written once its directory is ours.
        self.about = about.checked(tags, note)
        if console is None:
            from mnistres.core.display import console as make_console

            console = make_console()
        # Every registry name resolved before any work (once: a sweep hands in its resolved points).
        self.resolved = config if isinstance(config, Resolved) else resolve(config)
        self.config, self.console, self.overwrite, self.resume = self.resolved.config, console, overwrite, resume
        self.extra_callbacks, self.attempt = list(extra_callbacks), attempt
        self.world = distributed.World()  # the processes of the run (one, unless torchrun started several)
        self.run_dir = Path()
        self.record = record_module.RunRecord(self.run_dir, main=True, attempt=attempt)
        # The state callbacks read (`api.TrainerState`), set as the run gets ready.
        self.epoch = 0  # current epoch, from 1
        self.global_step = 0  # steps so far, in batches of batch_size images
        self.stop_reason = ""  # set by a callback (e.g. early stopping) to end after this epoch
        self.stop_status = "completed"  # how a run a callback stopped ends: completed, or pruned (by a tune study)
        self.val_confusion: list[list[int]] = []
        self.batch_loss: Optional[torch.Tensor] = None
        self.device: torch.device = torch.device("cpu")
        self.data: Any = None  # data_module.Prepared: train and val splits on the device
        self.model: Any = None  # the model being trained
        self.optimizer = self.scheduler = None  # and the learning-rate schedule
        self.steps_per_epoch = 0
        self.loss_sum, self.correct, self.seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0  # this epoch's
        # The machinery around it.
        self.amp: Optional[torch.dtype] = None  # the autocast dtype, if any
        self.cpu_share: Any = None  # cpus.Share: for threads=0 on the CPU, the threads the cores left free allow
        self.recorded_precision: Optional[str] = ""  # a resumed last.pt's precision ("" new run, None unrecorded)
        self.average: Optional[WeightAverage] = None  # the weights' moving average, when `ema` is on
        self.evaluated: Any = None  # the model evaluated and saved: the trained one, or its average
        self.forward = self.eval_forward = None  # what a training step calls (DDP-, compile-wrapped); evaluation
        self.train_batches = self.val_batches = None
        self.shuffle_generator = torch.Generator()  # the batch order's random stream (and low_res windows')
        self.steps: Optional[Steps] = None
        self.scaler = self.criterion = None
        self.criterion_sum: Any = None  # the loss summed over a share of the global batch (several processes)
        self.callbacks: list[Any] = []
        self.callback_names: list[str] = []  # who wrote each callback, for an error its hook raises
        self.provenance: dict[str, Any] = {}  # where each registry name came from
        self.outputs: list[str] = []  # the files callbacks declare they write in the run directory
        self.interrupt_flag: Any = interrupts.Flag()
        self.diverged_at: Optional[tuple[int, int, float]] = None  # (epoch, step, lr) once the loss is not finite

    @property
    def history(self) -> list[dict[str, Any]]:
        """The epochs logged so far (a resumed run's earlier ones too)."""
        return self.record.history

    # --- the run, top to bottom ---------------------------------------------------------

    def fit(self) -> RunResult:
        # Under torchrun the processes meet first: from then on a mistake found by any of them ends
        # them all (`distributed.fail_together`), instead of leaving the others waiting.
        world = distributed.launched()
        if world.several:
            world = distributed.join(world, distributed.device(self.config.device, world))
        self.world = world
        if not world.main:
            from mnistres.core.display import console as make_console

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
        config, world = self.config, self.world
        saved: Optional[dict[str, Any]] = None
        run_dir = Path()
        with distributed.fail_together(world):
            # Every rank must run what rank 0 runs (and records in config.yaml).
            distributed.check_alike(rundir.result_settings(config.to_dict()), world)
            if world.main:  # a resumed run's place is checked as a new run's is: before any data is loaded
                run_dir = record_module.place(config, overwrite=self.overwrite, resume=self.resume)
            if self.resume:
                run_dir = Path(config.out_dir) / str(config.name)
                saved = resume_module.load_point(run_dir, config)  # every rank loads last.pt
        # A new run's name may hold the time: rank 0's is the run's.
        self.run_dir = Path(distributed.rank0_text(str(run_dir) if world.main else "", world))
        self.record = record_module.RunRecord(self.run_dir, main=world.main, attempt=self.attempt)
        started, clock = datetime.now(timezone.utc), time.perf_counter()
        root = data_module.resolve_data_dir(config.data_dir)
        if world.several:  # downloads: rank 0 first, then one process on each other machine, then all read
            for first in (True, False):
                with distributed.fail_together(world):
                    if (world.main if first else world.local_rank == 0 and not world.main):
                        data_module.ensure_files(config.dataset, root, config.download)
        # Under amp=auto a resumed run goes on in the precision its last.pt was made in (None: made before
        # checkpoints recorded it), a new one in what this machine computes fastest.
        self.recorded_precision = saved.get("precision") if saved is not None else ""
        with distributed.fail_together(world):  # no collective operation in there
            assemble.prepare(self, root)
        assemble.build_model(self)
        self.follow_free_cores("from the start")  # looks at what others did while this run got ready
        # Only now, with data, model and optimizer ready, does anything reach the disk; and only
        # while this process holds the run directory's lock (rank 0: the one that writes).
        lock = Lock(self.run_dir)
        with distributed.fail_together(world):
            if world.main:
                try:
                    self.run_dir.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise WriteError(f"cannot create run directory {self.run_dir}: {reason(error)}") from None
                lock.acquire()
        try:
            return self._run(saved, started, clock)
        finally:
            if world.main:
                lock.release()

    def open_run_file(self, name: str, mode: str = "w") -> Any:
        """A text file in the run directory for a callback (`api.TrainerState.open_run_file`)."""
        from mnistres.core import atomic

        return atomic.open_text(self.run_dir / name, mode)

    def _run(self, saved: Optional[dict[str, Any]], started: datetime, clock: float) -> RunResult:
        """The epochs, with the run directory locked; summary.json says how they ended, whatever happened."""
        world, record = self.world, self.record
        with distributed.fail_together(world):
            record.clear(new=saved is None, overwrite=self.overwrite, outputs=self.outputs)
            if saved is not None:
                record.resume(resume_module.restore(self, saved))
            record.begin(self.config, outputs=self.outputs, started=started, device=devices.describe(self.device),
                         processes=world.describe())
            if world.main and (self.about[0] or self.about[1]):
                about.add(self.run_dir, *self.about)
        status, message, error_in_flight = "completed", "", False
        self._emit("on_train_begin")
        # SIGTERM stops the run like Ctrl-C; several processes stop together, at a step they agree on.
        with interrupts.signals_as_flag() if world.several else sigterm_as_interrupt() as flag, \
                interrupts.output_as_flag(flag or interrupts.Flag()) as self.interrupt_flag:
            try:
                status, message = self._epochs()
                if status == "completed":
                    record.add_mistakes(self)
            except BaseException as error:
                error_in_flight = True
                status, message, replacement = self._ending(error)
                if replacement is None:
                    raise
                raise replacement from (None if isinstance(replacement, Interrupted) else error)
            finally:
                # A Ctrl-C now waits until summary.json says how the run ended; once the run is being
                # interrupted, further signals (a second Ctrl-C, a second SIGTERM that was already on its
                # way) are dropped, so that they cannot cut the recording of the interruption short.
                with shielded() if status == "interrupted" else deferred():
                    summary = record.summary(self, status, message, started, time.perf_counter() - clock,
                                             self.diverged_at if status == "diverged" else None)
                    try:
                        record.end(summary)
                    except WriteError:
                        if not error_in_flight:
                            raise
                        # The error already on its way says what went wrong; summary.json keeps its last state.
                    self._emit("on_train_end", status)
        return RunResult(self.run_dir, status, message, record.history, summary.to_dict())

    def _epochs(self) -> tuple[str, str]:
        """The epochs still to train: (status, message) once they end, by themselves or as a callback asks."""
        config, world = self.config, self.world
        first = len(self.history) + 1
        for epoch in range(first, config.epochs + 1):
            self.epoch = epoch
            if epoch > first:
                self.follow_free_cores(f"from epoch {epoch}")
            self._emit("on_epoch_begin", epoch)
            logs = self.train_epoch(self.train_batches)
            if logs is None:  # non-finite loss
                return "diverged", self.divergence_message()
            self.evaluate(logs)
            with distributed.fail_together(world):
                self._emit("on_epoch_end", epoch, logs)
                self.record.add_epoch(logs, lambda: resume_module.state_of(self, logs))
            self.stop_reason = distributed.rank0_text(self.stop_reason, world)  # stop early together
            if self.stop_reason:  # every process knows it now: they agree on how too
                self.stop_status = distributed.rank0_text(self.stop_status if self.world.main else "", world)
            # After the last epoch nothing is left to save for later: a flag raised now (a signal after the
            # last step, the output closed while the epoch's line was printed) lets the run complete. Every
            # process knows the epoch, so they all decide alike.
            if epoch < config.epochs and distributed.raised_anywhere(self.interrupt_flag.raised, world):
                raise interrupts.stop(self.interrupt_flag)
            if self.stop_reason:
                return ("pruned" if self.stop_status == "pruned" else "completed"), self.stop_reason
        return "completed", ""

    def follow_free_cores(self, when: str) -> None:
        """Under `threads: 0` on the CPU, compute with the threads the cores left free by other processes
        allow (`cpus.Share`), chosen before each epoch; a change is said on the console. Each epoch's count
        goes into metrics.jsonl: it is part of the numbers."""
        if self.cpu_share is None:
            return
        before, threads = torch.get_num_threads(), self.cpu_share.choose()
        if threads == before:
            return
        torch.set_num_threads(threads)
        share = self.cpu_share
        why = (f"other processes keep {share.others:.1f} of {plural(share.cores, 'core')} busy"
               if threads < share.cap else "the cores are free again")
        self.console.print(f"{plural(threads, 'CPU thread')} {when}: {why} (--threads N fixes the count)",
                           style="dim", highlight=False, soft_wrap=True)

    def _ending(self, error: BaseException) -> tuple[str, str, Optional[BaseException]]:
        """How an error ends the run: (status, message, the error to raise instead, None: itself). Every
        run stopped part-way is resumable: the messages say how."""
        hint = rundir.resume_hint(self.run_dir)
        if isinstance(error, KeyboardInterrupt):  # last.pt keeps the last completed epoch: a point to go on from
            saved = 0 < self.epoch <= len(self.history)  # stopped at the end of an epoch, once it was saved
            message = f"interrupted {'after' if saved else 'during'} epoch {self.epoch}"
            if isinstance(error, interrupts.OutputClosed):
                message, hint = f"{message}: {error}", f"{error}; {hint}"
            return "interrupted", message, Interrupted(hint)
        if isinstance(error, WriteError):
            return "failed", str(error), WriteError(f"{error}; the run is marked failed: {hint}")
        lost = distributed.lost_rank(error, self.world)
        if lost is not None:  # another rank is gone: the run failed for that reason, and is resumable
            return "failed", str(lost), distributed.RankLost(f"{lost}; {hint} (under torchrun, as it was started)")
        return "failed", str(error) if isinstance(error, MnistresError) else f"{type(error).__name__}: {error}", None

    def evaluate(self, logs: dict[str, Any]) -> None:
        """The epoch's validation loss and accuracy into `logs` (BatchNorm refreshed first, if asked)."""
        start = time.perf_counter()
        if self.config.precise_bn > 0:
            model_module.refresh_batchnorm(self.evaluated, refresh_batches(self.config, self.data, self.world,
                                                                           self.epoch), self.amp)
        logs["val_loss"], logs["val_acc"], self.val_confusion = metrics.measure(
            self.eval_forward, self.val_batches, self.amp, self.world)
        logs["eval_seconds"] = time.perf_counter() - start

    def train_epoch(self, batches: data_module.Batches) -> Optional[dict[str, Any]]:
        """One pass over the training images; None if the loss stopped being finite."""
        device, world = self.device, self.world
        self.model.train()
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0
        # Reading a value from the device waits for it; on the CPU that costs nothing, on a GPU
        # it would stall the queue every step, so there we look every 50 steps.
        check_every = 1 if device.type == "cpu" else 50
        lr = self.optimizer.param_groups[0]["lr"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for updates, step in enumerate(self.steps.of_epoch(batches, lambda: self.global_step), start=1):
            lr = self.take_step(step)
            if self.cpu_share is not None:
                self.cpu_share.look()
            if updates % check_every == 0 or step.done == len(batches):
                if not self.check_step():
                    self.diverged_at = (self.epoch, step.done, lr)
                    return None
            self._emit("on_batch_end", step.done)
        loss_sum, correct, seen = float(self.loss_sum), int(self.correct), self.seen  # the epoch's one sync
        if world.several:
            totals = distributed.all_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64), world)
            loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
        seconds = time.perf_counter() - start
        return {"epoch": self.epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr,
                "seconds": seconds, "images_per_s": seen / seconds,
                # On the CPU the thread count is part of the numbers: each epoch says what it ran with (a run
                # resumed with other --threads mixes them, and its summary's numerics name only the last).
                **({"threads": torch.get_num_threads()} if device.type == "cpu" else {})}

    def take_step(self, step: Step) -> float:
        """One optimizer step on `step`'s images, added to the epoch's sums; the learning rate it used."""
        optimizer, world, y = self.optimizer, self.world, step.labels
        with devices.autocast(self.device, self.amp):
            logits = self.forward(step.inputs)
            if world.several:
                # This rank's share of the global batch: its loss sum, scaled so that DDP's average of
                # the gradients over the ranks is the gradient of the global batch's mean loss.
                share_sum = self.criterion_sum(logits.float(), y)
                loss = share_sum * (world.size / step.images)
            else:
                loss = self.criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used
        for _ in range(step.batches):  # the schedule (and global_step) counts batches of batch_size images
            self.scheduler.step()
        self.global_step += step.batches
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
        return lr

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

    def running_metrics(self) -> tuple[float, float, int]:
        """Loss, accuracy and images so far in this epoch (waits for the device)."""
        seen = max(self.seen, 1)
        return float(self.loss_sum) / seen, int(self.correct) / seen, self.seen

    def divergence_message(self) -> str:
        epoch, step, lr = self.diverged_at
        where = f"at epoch {epoch}, step {step}" if self.device.type == "cpu" else f"in epoch {epoch}, by step {step}"
        return (f"training loss became NaN/inf {where} (lr {lr:g}); the run stopped. "
                f"Try a lower --lr (e.g. {self.config.lr / 10:g}) or a warm-up schedule (--schedule onecycle)")

    def _emit(self, hook: str, *args: Any) -> None:
        for callback, name in zip(self.callbacks, self.callback_names):
            try:
                getattr(callback, hook)(self, *args)
            except MnistresError:
                raise
            except Exception as error:  # a plugin's bug: say whose, in one line (--debug shows the traceback)
                raise PluginError(f"{name} raised in {hook}: {type(error).__name__}: {error}") from error
