"""One run on several processes, as `torchrun` starts them: PyTorch's DistributedDataParallel, with
what it leaves to us — which process does what, sums across processes, decisions taken together.

Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK set, WORLD_SIZE > 1) a run joins the process
group (NCCL on CUDA, gloo on the CPU). Every process draws the same global batches and takes its
share of each; BatchNorm statistics are those of the global batch (`GlobalBatchNorm2d`, unless
`sync_bn` is off), so the run's numbers are those of one process, up to summation order. Only
rank 0 writes files and prints. A mistake found on any rank, early stopping and Ctrl-C are
decided together (`fail_together`, `raised_anywhere`), so that no process waits forever for another.
Without torchrun, `World()` (one process) changes nothing.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from mnistres.errors import ConfigError, DeviceError, MnistresError

# What torchrun sets for every process it starts (MASTER_ADDR/MASTER_PORT tell them where to meet).
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """The processes of one run: this one's rank among `size`, and its rank on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""  # nccl | gloo once joined; "" for one process
    joined_here: bool = field(default=False, compare=False)  # whether `leave` ends the group (not a caller's own)
    peers: tuple[tuple[str, int], ...] = field(default=(), compare=False)  # (host, pid) of each rank, once joined

    @property
    def main(self) -> bool:
        """The process that writes files and prints."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.size > 1

    def describe(self) -> dict[str, Any]:
        """For summary.json."""
        return {"world_size": self.size, "backend": self.backend or None}


def launched() -> World:
    """The world torchrun started this process in, read from its environment; one process without it."""
    found = {name: os.environ.get(name) for name in ENVIRONMENT}
    if not any(found.values()):
        return World()
    try:
        rank, size, local_rank = (int(str(found[name])) for name in ENVIRONMENT)
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must all be set to whole numbers (torchrun sets them); "
                          f"here: {', '.join(f'{k}={v}' for k, v in found.items())}") from None
    if not (size >= 1 and 0 <= rank < size and local_rank >= 0):
        raise ConfigError(f"RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local_rank} do not describe a process of a run")
    return World(rank, size, local_rank)


def is_main_process() -> bool:
    """False in torchrun's processes other than rank 0 (they print nothing), before any joining."""
    try:
        return launched().main
    except ConfigError:  # a malformed environment is reported where the run starts; here: print
        return True


def refuse(command: str) -> None:
    """Commands other than train run as one process: several copies would only repeat (or collide in) each
    other's work."""
    if launched().several:
        raise ConfigError(f"mnistres {command} runs as one process; only `mnistres train` runs under torchrun")


def device(spec: str, world: World) -> torch.device:
    """The device of this process: under torchrun `cuda` and `auto` mean cuda:LOCAL_RANK (one GPU per
    process), `cpu` means the CPU; any other choice would put several processes on one device."""
    from mnistres.train import devices

    if not world.several:
        return devices.torch_device(spec)
    text = str(spec).strip().lower()
    if text not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"under torchrun use --device cuda (each process takes the GPU of its LOCAL_RANK), "
                          f"auto or cpu, not '{spec}'")
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{spec}' is not available: no CUDA GPU found; under torchrun use --device cpu")
    if world.local_rank >= torch.cuda.device_count():
        raise DeviceError(f"LOCAL_RANK={world.local_rank} has no GPU of its own: this machine has "
                          f"{torch.cuda.device_count()}; start at most that many processes per machine")
    return torch.device("cuda", world.local_rank)


def join(world: World, on: torch.device) -> World:
    """Join the run's process group (its address comes from torchrun's environment)."""
    if not world.several:
        return world
    import torch.distributed as dist

    backend = "nccl" if on.type == "cuda" else "gloo"
    if on.type == "cuda":
        torch.cuda.set_device(on)
    if dist.is_initialized():  # a script that calls `train` may have joined already
        return World(world.rank, world.size, world.local_rank, dist.get_backend(), peers=_peers(world.size))
    dist.init_process_group(backend=backend)
    return World(world.rank, world.size, world.local_rank, backend, joined_here=True, peers=_peers(world.size))


def _peers(size: int) -> tuple[tuple[str, int], ...]:
    """Every rank's host and pid, so that a rank that dies can be named (`lost_rank`)."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, (socket.gethostname(), os.getpid()))
    return tuple((str(host), int(pid)) for host, pid in gathered)


def leave(world: World) -> None:
    if world.joined_here:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# --- sharing the work -------------------------------------------------------------------


def share(count: int, world: World) -> slice:
    """This process's part of `count` items: contiguous, the first `count % size` parts one longer, none
    repeated or left out (a part may be empty when there are fewer items than processes)."""
    base, extra = divmod(count, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (1 if world.rank < extra else 0))


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The tensor summed over the processes (in place); itself for one process."""
    if world.several:
        import torch.distributed as dist

        if world.backend == "nccl" and tensor.device.type != "cuda":  # NCCL sums GPU tensors only
            on_gpu = tensor.to("cuda")
            dist.all_reduce(on_gpu)
            tensor.copy_(on_gpu)
        else:
            dist.all_reduce(tensor)
    return tensor


# --- deciding together ------------------------------------------------------------------


class EndedElsewhere(MnistresError):
    """Another process of the run failed; rank 0 reports why, so this one ends without a word."""

    quiet = True


@contextmanager
def fail_together(world: World) -> Iterator[None]:
    """Run the block on every process; if it fails on any of them, end it on all of them.

    Rank 0 raises the error of the lowest failing rank (naming the rank, if not its own); the other
    ranks end with `EndedElsewhere`, which prints nothing (a bug keeps its traceback where it
    happened). Ctrl-C passes through: it is shared by `raised_anywhere`.
    """
    if not world.several:
        yield
        return
    error: Exception | None = None
    try:
        yield
    except Exception as raised:  # noqa: BLE001 - every failure must reach the other processes
        error = raised
    import torch.distributed as dist

    expected = isinstance(error, MnistresError)
    mine = None if error is None else (type(error).__name__, str(error), expected)
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, mine)
    failed = [(rank, found) for rank, found in enumerate(gathered) if found is not None]
    if not failed:
        return
    if error is not None and (not expected or world.main):
        raise error  # rank 0's own mistake, or a bug (its traceback belongs to the rank where it happened)
    if not world.main:
        raise EndedElsewhere(f"rank {failed[0][0]} failed") from None
    rank, (kind, message, expected) = failed[0]
    more = f" (and {len(failed) - 1} more {'rank' if len(failed) == 2 else 'ranks'})" if len(failed) > 1 else ""
    raise MnistresError(f"rank {rank}: {message if expected else kind + ': ' + message}{more}")


def check_alike(settings: dict[str, Any], world: World) -> None:
    """Refuse, on every process, a run whose processes were started with different settings (`--lr` on one
    rank only): each would train its share with its own, and config.yaml would hold rank 0's."""
    if not world.several:
        return
    import torch.distributed as dist

    from mnistres.core.values import text

    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, settings)
    differing = []
    for key in dict.fromkeys(k for found in gathered for k in found):
        values = [found.get(key) for found in gathered]
        others = [rank for rank, value in enumerate(values) if value != values[0]]
        if others:
            shown = "; ".join(f"{text(values[rank])} on rank {rank}" for rank in others[:3])
            differing.append(f"{key} is {text(values[0])} on rank 0 but {shown}")
    if differing:
        more = f" (and {len(differing) - 2} more settings)" if len(differing) > 2 else ""
        raise ConfigError(f"the processes of this run were started with different settings: {'; '.join(differing[:2])}"
                          f"{more}; start every process with the same options")


class RankLost(MnistresError):
    """Another process of the run ended without a word (killed, out of memory, its machine gone)."""


# What gloo and NCCL say when the process at the other end of a connection is gone.
PEER_GONE = ("closed by peer", "reset by peer", "broken pipe", "connection refused", "timed out", "timeout",
             "communicator was aborted", "connection closed")


def lost_rank(error: BaseException, world: World) -> RankLost | None:
    """`error`, raised by a collective operation because another rank is gone, as one line naming that rank
    (one on this machine, found by its pid) or saying that contact was lost; None for any other error."""
    if not world.several or not isinstance(error, RuntimeError) or isinstance(error, MnistresError):
        return None
    from mnistres.core.lock import alive

    here = socket.gethostname()

    def dead() -> list[int]:
        return [rank for rank, (host, pid) in enumerate(world.peers)
                if rank != world.rank and host == here and not alive(pid)]

    gone = dead()
    if not gone and not any(phrase in str(error).lower() for phrase in PEER_GONE):
        return None  # an error of this rank's own: not about another
    deadline = time.monotonic() + 2.0  # a peer's process may take a moment to be gone
    while not gone and time.monotonic() < deadline:
        time.sleep(0.1)
        gone = dead()
    if gone:
        who = ", ".join(f"rank {rank} (process {world.peers[rank][1]} on {here})" for rank in gone)
        return RankLost(f"{who} ended without a word (killed, or out of memory), so every rank stopped")
    first = " ".join(str(error).split())[:160]
    return RankLost(f"lost contact with another process of the run (killed, or its machine went away): {first}")


def raised_anywhere(flag: bool, world: World) -> bool:
    """Whether any process raised its flag (every process learns the same answer)."""
    if not world.several:
        return flag
    return bool(all_sum(torch.tensor([float(flag)]), world).item() > 0)


def rank0_text(text: str, world: World) -> str:
    """The first non-empty text among the processes, lowest rank first (e.g. why to stop early)."""
    if not world.several:
        return text
    import torch.distributed as dist

    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, text)
    return next((found for found in gathered if found), "")


# --- BatchNorm over the global batch ----------------------------------------------------


def _summed(tensor: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    total = tensor.clone(memory_format=torch.contiguous_format)
    dist.all_reduce(total)
    return total


class _SumAcross(torch.autograd.Function):
    """A tensor summed over the processes, differentiable: each process's share of the sum gets the
    sum of every process's gradient of it (what torch.distributed.nn's deprecated all_reduce did)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        return _summed(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _summed(grad)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, every process contributing
    its share: sums across processes (two-pass, as one process computes mean and variance), through
    autograd so that the gradients are those of one process too. Same parameters and buffers as
    BatchNorm2d, so checkpoints hold a plain model. Runs on any backend (torch's SyncBatchNorm
    needs a GPU). Evaluation uses the running statistics, which are the same on every process.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        values = x.float()
        dims = (0, 2, 3)
        local = torch.cat([values.sum(dims), values.new_tensor([values.numel() / values.shape[1]])])
        total = _SumAcross.apply(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = values - mean[None, :, None, None]
        variance = _SumAcross.apply((centred * centred).sum(dims)) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            unbiased = variance * count / (count - 1).clamp_min(1)  # no host sync: this runs every step
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
            self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), factor)
        scale = torch.rsqrt(variance + self.eps) * self.weight
        out = centred * scale[None, :, None, None] + self.bias[None, :, None, None]
        return out.to(x.dtype)


def globalise_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm2d of `model` made a GlobalBatchNorm2d, with the same parameters and buffers."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            replacement.to(device=child.weight.device)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(model, name, replacement)
        else:
            globalise_batchnorm(child)
    return model
