"""Datasets as tensors on the device, and a loader that only slices them.

MNIST is 47 MB as uint8: it is read once (from the original IDX files, gzipped or not,
where they lie, so a read-only folder works), moved to the device, and every batch is
an index into it, normalised on the device. No per-sample Python, no DataLoader.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from mnistres.core import places
from mnistres.config import check_subset
from mnistres.train.distributed import World, share
from mnistres.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = 10
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def default_data_dir() -> Path:
    """The per-user cache (`places.user_cache`): datasets are downloaded there unless told otherwise."""
    return places.user_cache()


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir, else $MNISTRES_DATA_DIR, else the per-user cache."""
    chosen = data_dir or os.environ.get("MNISTRES_DATA_DIR") or default_data_dir()
    return Path(chosen).expanduser()


# --- reading IDX files ----------------------------------------------------------------


def described(dataset: str) -> Any:
    """The dataset's files and statistics (`api.DatasetFiles`), from the datasets registry (a dataset takes
    no options: its name, checked with the config, is looked up, never parsed again)."""
    from mnistres.registry import Spec, datasets

    return datasets.build(Spec(datasets.get(dataset).name, {}))


def normalisation(dataset: str) -> tuple[float, float]:
    """Pixel mean and standard deviation (of value/255) over the dataset's training images."""
    files = described(dataset)
    return files.mean, files.std


def raw_dir(dataset: str, root: Path) -> Path:
    return root / described(dataset).folder / "raw"


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path, magic: int) -> torch.Tensor:
    """An IDX file (plain or .gz) as a uint8 tensor of the shape its header states."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if len(data) < 8:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[0:4], "big")
    if found != magic:
        raise DataError(f"{path} is not an IDX {'image' if magic == IMAGE_MAGIC else 'label'} file "
                        f"(magic number {found}, expected {magic})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = math.prod(shape)
    if len(data) - header != expected:
        raise DataError(f"{path} is truncated or padded: header says {shape} ({expected:,} bytes), "
                        f"file holds {len(data) - header:,}")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def load_split(dataset: str, root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 of one split, on the CPU."""
    folder = raw_dir(dataset, root)
    stems = FILES[split]
    paths = [_find(folder, stem) for stem in stems]
    if None in paths:
        _download(dataset, root, download)
        paths = [_find(folder, stem) for stem in stems]
    images = read_idx(paths[0], IMAGE_MAGIC)
    labels = read_idx(paths[1], LABEL_MAGIC).long()
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{paths[0]} / {paths[1]}: unexpected shapes {tuple(images.shape)} / {tuple(labels.shape)}")
    if len(images) != len(labels):
        raise DataError(f"{paths[0].name} holds {len(images):,} images but {paths[1].name} "
                        f"{len(labels):,} labels in {folder}")
    if len(labels) and int(labels.max()) >= CLASSES:
        raise DataError(f"{paths[1]} has label {int(labels.max())}; expected 0-9")
    return images.unsqueeze(1), labels


def ensure_files(dataset: str, root: Path, download: bool) -> None:
    """Make sure all four files are there: download the missing ones now, or fail in one line.

    A sweep calls this once before its points start, so that they neither fail one by one
    nor download side by side into the same folder.
    """
    if not _holds_all(raw_dir(dataset, root)):
        _download(dataset, root, download)


def _holds_all(folder: Path) -> bool:
    """Whether `folder` holds the four files (each plain or gzipped)."""
    return all(_find(folder, stem) for pair in FILES.values() for stem in pair)


def _missing_message(dataset: str, root: Path, why: str) -> str:
    folder = raw_dir(dataset, root)
    names = ", ".join(f"{stem}[.gz]" for pair in FILES.values() for stem in pair)
    return (f"{dataset} not found in {folder} ({why}). Expected the four files: {names}. "
            f"Point --data-dir (or MNISTRES_DATA_DIR) at the folder that holds {described(dataset).folder}/raw/")


def _misplaced(dataset: str, root: Path) -> str:
    """Where `root` is torchvision's layout one level off (`--data-dir data/MNIST`, or .../MNIST/raw), or holds
    the four files loose: the one line that says which folder to give instead; '' otherwise. Without it a
    download would fetch a second copy into data/MNIST/MNIST/raw/. Folder names decide, since MNIST's and
    Fashion-MNIST's files have the same names."""
    name = described(dataset).folder
    if root.name == name and _holds_all(root / "raw"):
        folder, fix = root / "raw", f"give --data-dir {root.parent}"
    elif root.name == "raw" and root.parent.name == name and _holds_all(root):
        folder, fix = root, f"give --data-dir {root.parent.parent}"
    elif root.name != "raw" and _holds_all(root):  # another dataset's raw/ is not loose files
        folder, fix = root, f"move them into {raw_dir(dataset, root)}/"
    else:
        return ""
    return f"{folder} holds the {dataset} files, but --data-dir takes the folder that holds {name}/raw/: {fix}"


def _download(dataset: str, root: Path, allowed: bool) -> None:
    misplaced = _misplaced(dataset, root)
    if misplaced:
        raise DataError(misplaced)
    if not allowed:
        raise DataError(_missing_message(dataset, root, "downloads are off"))
    import torchvision

    source = described(dataset).download
    if not source:
        raise DataError(_missing_message(dataset, root, "this dataset is not downloaded by mnistres"))
    dataset_class = getattr(torchvision.datasets, source)
    folder = raw_dir(dataset, root)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # every folder the download may make
    present = set(folder.iterdir()) if folder.is_dir() else set()
    # torchvision prints its mirror attempts on stdout; keep stdout clean for --json consumers.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dataset_class(root=str(root), train=True, download=True)
    except Exception as error:  # noqa: BLE001 - network and filesystem failures all mean "no data"
        # Leave nothing behind: partial downloads, then the folders made for them (innermost first).
        for path in set(folder.iterdir()) - present if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                path.unlink()
        for path in created:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise DataError(_missing_message(dataset, root, f"download failed: {download_reason(error)}")) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def download_reason(error: BaseException) -> str:
    """Why a download failed, in one line. torchvision's message starts "Error downloading X:" and
    puts each mirror's error on the lines after it; the last of those is the reason."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    reason = lines[-1].strip("<>")
    if len(lines) > 1 and lines[0].endswith(":"):
        reason = f"{lines[0]} {reason}"
    return " ".join(reason.split())[:300]


# --- tensors on the device and batches ------------------------------------------------


@dataclass
class Split:
    images: torch.Tensor  # (N, 1, 28, 28) uint8, on the device
    labels: torch.Tensor  # (N,) int64, on the device
    positions: torch.Tensor | None = None  # (N,) int64 on the CPU: each image's place in its file (None: 0..N-1)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Data:
    train: Split
    val: Split
    val_name: str  # "test" or "held-out"
    mean: float
    std: float


def prepare(dataset: str, root: Path, *, download: bool, train_size: int | None, val_split: float,
            seed: int, device: torch.device) -> Data:
    """Training and validation splits on `device`, subset and hold-out drawn with `seed`."""
    train_images, train_labels = load_split(dataset, root, "train", download)
    total = len(train_labels)
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    held, available = check_subset(train_size, val_split, total)
    train_index = order[held:held + (train_size or available)]
    val_positions = order[:held] if held else None
    if held:
        val_images, val_labels, val_name = train_images[val_positions], train_labels[val_positions], "held-out"
    else:
        val_images, val_labels = load_split(dataset, root, "test", download)
        val_name = "test"
    mean, std = normalisation(dataset)
    return Data(
        train=Split(train_images[train_index].to(device), train_labels[train_index].to(device), train_index),
        val=Split(val_images.to(device), val_labels.to(device), val_positions),
        val_name=val_name,
        mean=mean,
        std=std,
    )


@dataclass(frozen=True)
class Warp:
    """The random warp of each training image: affine (rotation, scaling, shift) plus an elastic distortion."""
    rotate: float = 0.0  # degrees, ± this much
    zoom: float = 0.0  # fraction, ± this much
    translate: float = 0.0  # pixels, ± this much
    elastic: float = 0.0  # RMS displacement of the smooth distortion, pixels
    elastic_sigma: float = 4.0  # width of the Gaussian that smooths the distortion, pixels

    @property
    def active(self) -> bool:
        return any((self.rotate, self.zoom, self.translate, self.elastic))


class Batches:
    """Iterates (inputs, labels) over a Split: shuffled index slices, normalised on the device.

    The shuffle generator lives on the CPU so that the order is the same on every device. With a
    `world` of several processes, every process draws the same global batches (order and
    augmentation) and yields its share of each (`distributed.share`).
    """

    def __init__(self, split: Split, batch_size: int, *, mean: float, std: float, shuffle: bool = False,
                 generator: torch.Generator | None = None, augment: bool = False,
                 warp: Warp = Warp(), channels_last: bool = False,
                 world: World | None = None) -> None:
        self.split, self.batch_size, self.world = split, batch_size, world
        self.warp = warp if warp.active else None
        self.shuffle, self.generator, self.augment = shuffle, generator, augment
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.split.images, self.split.labels
        count = len(labels)
        order = None
        if self.shuffle:
            order = torch.randperm(count, generator=self.generator).to(labels.device, non_blocking=True)
        for start in range(0, count, self.batch_size):
            if order is None:
                x, y = images[start:start + self.batch_size], labels[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                x, y = images[index], labels[index]
            if self.augment:
                x = random_shift(x, 2, self.generator)
            if self.warp is not None:
                x = random_warp(x, self.warp, self.generator)
            if self.world is not None and self.world.several:
                part = share(len(y), self.world)
                x, y = x[part], y[part]
            yield self.normalise(x), y

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().mul_(self.scale).sub_(self.shift)
        return x.contiguous(memory_format=self.memory_format)


def random_shift(images: torch.Tensor, pixels: int, generator: torch.Generator | None) -> torch.Tensor:
    """Shift each image by up to `pixels` in x and y (zero fill), all in one gather on the device."""
    count, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (pixels,) * 4)
    offsets = torch.randint(0, 2 * pixels + 1, (2, count), generator=generator).to(images.device)
    return _windows(padded, offsets, height, width)


def _windows(images: torch.Tensor, offsets: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The height x width window of each image (N, 1, H', W') whose top-left corner is at (offsets[0][i],
    offsets[1][i]), all in one gather on the device; (N, 1, height, width), contiguous."""
    rows = torch.arange(height, device=images.device)[None, :] + offsets[0][:, None]  # (N, height)
    cols = torch.arange(width, device=images.device)[None, :] + offsets[1][:, None]  # (N, width)
    batch = torch.arange(len(images), device=images.device)[:, None, None]
    return images[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def shrink(inputs: torch.Tensor, side: int) -> torch.Tensor:
    """Normalised inputs (N, 1, H, W) scaled down to side x side (bilinear with antialiasing, so each output
    pixel averages the pixels it covers), in the inputs' memory format. Training at a lower resolution
    first makes each step cheaper; the model ends in global average pooling, so it takes any size."""
    small = torch.nn.functional.interpolate(inputs, size=(side, side), mode="bilinear", antialias=True,
                                            align_corners=False)
    return _in_layout_of(inputs, small)


def _in_layout_of(inputs: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """`result` in the memory format of `inputs` (channels-last stays channels-last for the model)."""
    channels_last = inputs.is_contiguous(memory_format=torch.channels_last)
    return result.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


CROP_JITTER = 2  # pixels a low-resolution window moves from the centre, each way (as `augment`'s shifts)


def random_crop(inputs: torch.Tensor, side: int, generator: torch.Generator | None, *,
                whole: int | None = None, part: slice = slice(None)) -> torch.Tensor:
    """A side x side window of each image (N, 1, H, W) around its centre, moved by up to CROP_JITTER pixels
    each way (less if the window leaves less room), in the inputs' memory format. Unlike `shrink`, the
    digit keeps its scale; MNIST's digits sit in the central 20x20 pixels, so a window of 20 or more
    loses little of them.

    With several processes, `inputs` is this process's `part` of a global batch of `whole` images: the
    windows are drawn for the whole batch (the same draws on every process, and as one process draws)
    and this part of them is used."""
    _, _, height, width = inputs.shape
    slack = min(height, width) - side
    jitter = min(CROP_JITTER, slack // 2)
    draws = torch.randint(0, 2 * jitter + 1, (2, len(inputs) if whole is None else whole), generator=generator)
    return _in_layout_of(inputs, _windows(inputs, (draws[:, part] + (slack // 2 - jitter)).to(inputs.device), side, side))


def random_warp(images: torch.Tensor, warp: Warp, generator: torch.Generator | None) -> torch.Tensor:
    """Rotate each image by up to ±`rotate` degrees, scale it by up to ±`zoom`, shift it by up to ±`translate`
    pixels and distort it elastically (bilinear, black outside), in one warp of the whole batch on the device.
    The draws come from `generator` on the CPU, so they are the same on every device and every process.
    Returns float pixels in [0, 255]."""
    count, _, height, width = images.shape
    draws = (torch.rand(4, count, generator=generator) * 2 - 1).to(images.device)
    angle = draws[0] * (warp.rotate * math.pi / 180)
    scale = 1 + draws[1] * warp.zoom
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # output -> input: the inverse zoom
    theta = torch.stack([
        torch.stack([cos, -sin, draws[2] * (2 * warp.translate / width)], dim=1),
        torch.stack([sin, cos, draws[3] * (2 * warp.translate / height)], dim=1),
    ], dim=1)  # (N, 2, 3), in the [-1, 1] coordinates of affine_grid
    grid = torch.nn.functional.affine_grid(theta, [count, 1, height, width], align_corners=False)
    if warp.elastic:
        pixels = elastic_field(count, height, width, warp.elastic, warp.elastic_sigma, generator).to(images.device)
        grid = grid + pixels * torch.tensor([2 / width, 2 / height], device=images.device)  # pixels -> [-1, 1] units
    return torch.nn.functional.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=False)


def elastic_field(count: int, height: int, width: int, rms: float, sigma: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Smooth random displacements (N, height, width, 2) in pixels, x then y, as in Simard et al. (2003):
    uniform noise in [-1, 1] per pixel, blurred by a Gaussian of `sigma` pixels, scaled so that each
    component's expected root mean square is `rms` pixels. Drawn and blurred on the CPU (small: two
    numbers per pixel), so the draws are the same on every device."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps /= taps.sum()
    noise = torch.rand(count * 2, 1, height, width, generator=generator) * 2 - 1
    smooth = torch.nn.functional.conv2d(noise, taps.view(1, 1, 1, -1), padding=(0, radius))
    smooth = torch.nn.functional.conv2d(smooth, taps.view(1, 1, -1, 1), padding=(radius, 0))
    # Blurring i.i.d. noise of variance 1/3 by a kernel k leaves variance sum(k**2)/3 (away from the edges);
    # the 2-D kernel is the outer product of the taps, so sum(k**2) = sum(taps**2)**2.
    expected_rms = math.sqrt(float((taps ** 2).sum()) ** 2 / 3)
    return (smooth * (rms / expected_rms)).view(count, 2, height, width).permute(0, 2, 3, 1)
