"""Choosing and checking the device, CPU threads and mixed precision."""

from __future__ import annotations

import contextlib
import os
import re
from typing import Sequence

import torch

from mnistres.core import cpus
from mnistres.errors import DeviceError
from mnistres.core.wording import plural

_SPEC = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def available() -> list[str]:
    """The devices this machine has, as --device values."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def torch_device(spec: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything unavailable fails in one line."""
    text = str(spec).strip().lower()
    match = _SPEC.match(text)
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"unknown device '{spec}'. Use auto, cpu, cuda, cuda:N or mps; here: {', '.join(available())}")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise DeviceError(f"device 'mps' is not available here (it needs Apple silicon); available: {', '.join(available())}")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{spec}' is not available: no CUDA GPU found; available: {', '.join(available())}")
    number = int(index) if index is not None else torch.cuda.current_device()
    if number >= torch.cuda.device_count():
        raise DeviceError(f"device '{spec}' is not available; available: {', '.join(available())}")
    return torch.device("cuda", number)


THREADS_PER_CORE = 4  # more CPU threads than this per core only slow a run down; thousands crash torch


def max_threads() -> int:
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def check_threads(threads: int) -> None:
    """A thread count this machine can run (the config's own range is machine-independent)."""
    if threads > max_threads():
        raise DeviceError(f"threads={threads} is more than this machine can use: at most {max_threads()} "
                          f"({THREADS_PER_CORE} per core; 0 follows the cores left free)")


def _torch_default_threads() -> int:
    """torch's own count (OMP_NUM_THREADS, else one per core this process may run on), capped by the
    control group's CPU quota, which torch does not look at (a container's `--cpus`)."""
    quota = cpus.quota_cores()
    return max(1, min(torch.get_num_threads(), quota) if quota else torch.get_num_threads())


_TORCH_DEFAULT_THREADS = _torch_default_threads()  # before anything here changes it


def default_threads() -> int:
    """The most threads `threads: 0` uses: torch's own choice for this process (one per core, or
    OMP_NUM_THREADS) within the CPU quota, unless `use_default_threads` set it."""
    return _TORCH_DEFAULT_THREADS


def use_default_threads(threads: int) -> None:
    """Make `threads: 0` mean up to `threads` in this process. A sweep resolves it once, in its own process,
    and hands the number to each point's process, so that a point run as a child or on a Dask worker
    (which sets OMP_NUM_THREADS=1) computes with the count the sweep's own points use."""
    global _TORCH_DEFAULT_THREADS
    check_threads(threads)
    _TORCH_DEFAULT_THREADS = max(1, threads)


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads; 0: the default, even if an earlier run in this process changed it
    (`core_share` then lowers it while other processes hold cores).

    On the CPU the thread count is part of a run's result: reductions are split across threads,
    so 1 and 2 threads sum in different orders and differ in the last digits.
    """
    check_threads(threads)
    torch.set_num_threads(threads or _TORCH_DEFAULT_THREADS)


def core_share(threads: int, device: torch.device) -> cpus.Share | None:
    """For `threads: 0` on the CPU, what chooses the thread count from the cores other processes leave
    free (`cpus.Share`; its `choose()` then goes to `torch.set_num_threads`); None for a fixed count or
    another device."""
    if threads or device.type != "cpu":
        return None
    return cpus.Share(_TORCH_DEFAULT_THREADS)


def amp_dtype(mode: str, device: torch.device, recorded: str | None = "") -> torch.dtype | None:
    """The autocast dtype for `mode` on `device`, or None for full precision.

    `auto` uses bf16 on CUDA GPUs that support it and on CPUs that compute bf16 in hardware (AVX512-BF16
    or AMX: 1.2x to 1.5x the float32 speed for this model, accuracy unchanged, docs/benchmarks/bf16.md),
    and float32 elsewhere (where bf16 is emulated, it is slower). `recorded` is the precision a checkpoint
    was made in ("" when there is no checkpoint, None for one older than the record): under `auto` a model
    goes on (resumed) or is measured (eval) in it, so that its numbers stay as they were logged; a
    checkpoint without the record was made when `auto` meant float32 on every CPU.
    """
    if mode == "off":
        return None
    if mode == "auto":
        if recorded:
            chosen = PRECISIONS.get(recorded)
            if chosen is torch.float16 and device.type == "cpu":
                return None  # made on a GPU in fp16, which a CPU does not autocast to
            if recorded in PRECISIONS:
                return chosen
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and recorded == "" and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    if mode == "fp16" and device.type == "cpu":
        raise DeviceError("amp=fp16 needs a GPU; on the CPU use amp=bf16 or amp=off")
    return torch.bfloat16 if mode == "bf16" else torch.float16


PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}  # as numerics names them


def precision_name(dtype: torch.dtype | None) -> str:
    """A precision as summary.json's numerics and checkpoints name it: float32, bfloat16, float16."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


CPU_BF16_ENV = "MNISTRES_CPU_BF16"  # 0 or 1: take this CPU as without or with bf16 in hardware (amp=auto's choice)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), as torch reports it, unless
    MNISTRES_CPU_BF16 says otherwise (the tests pin it, so that a run's precision does not depend on the CPU
    the suite happens to run on)."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        found = getattr(getattr(torch, "cpu", None), check, None)
        try:
            if found is not None and found():
                return True
        except RuntimeError:  # a torch build that cannot tell
            continue
    return False


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision when `dtype` is set; otherwise no autocast context at all (older torch
    rejects some device types in `torch.autocast` even when it is disabled)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def describe(device: torch.device, threads: int = 0) -> str:
    """The device in words, as summaries and sweep lines give it: `cpu (2 threads)`, `cuda:0 (NVIDIA ...)`.
    `threads`: the CPU threads a run there will use (0: those this process uses now)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({plural(threads or torch.get_num_threads(), 'thread')})"
    return str(device)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


# Environment variables that change which kernels run, or how they round, on CPUs and GPUs.
NUMERIC_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                       "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE", "MKL_CBWR",
                       "MKL_ENABLE_INSTRUCTIONS", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE",
                       "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE")


def numerics(device: torch.device, amp: torch.dtype | None, epoch_threads: Sequence[int] = ()) -> dict[str, object]:
    """What a run's numbers depend on besides its config and seed, for summary.json.

    Two runs agree to the last digit only where all of this agrees: on the CPU the thread count
    (reductions are split across threads: `threads_by_epoch` lists the counts where the epochs' differ,
    `epoch_threads` as metrics.jsonl has them) and the instruction set the kernels were chosen for; on
    a GPU its model, CUDA and cuDNN versions and TF32; everywhere the torch version, the precision
    and the variables below when set.
    """
    found: dict[str, object] = {
        "device": device.type,
        "torch": torch.__version__,
        "precision": precision_name(amp),
        "threads": torch.get_num_threads(),
        "cpu_capability": _cpu_capability(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cpu" and len(set(epoch_threads)) > 1:
        found["threads_by_epoch"] = list(epoch_threads)
    if device.type == "cuda":
        found.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                     tf32_cudnn=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)
    environment = {name: os.environ[name] for name in NUMERIC_ENVIRONMENT if name in os.environ}
    if environment:
        found["environment"] = environment
    return found


def _cpu_capability() -> str:
    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return str(getter()) if getter is not None else "unknown"
