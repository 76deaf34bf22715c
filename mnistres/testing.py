"""Tiny synthetic MNIST for tests (mnistres's own and plugins'), written as real IDX files.

    from mnistres.testing import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "data")  # <root>/MNIST/raw/{train,t10k}-*-ubyte.gz
    # then: mnistres train --data-dir <root> --no-download --device cpu --set width=8 --set blocks=1 ...

The files sit in torchvision's layout and go through the same reader as the real ones, so a test
exercises the whole path from disk. The images are learnable: a class is the orientation of a
grating, which a small convnet picks up in a few steps even after global pooling.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import torch

from mnistres.train.data import IMAGE_MAGIC, LABEL_MAGIC

TRAIN_IMAGES, TEST_IMAGES = 320, 160  # the default sizes: a run over them takes about a second


def synthetic_digits(count: int, seed: int) -> tuple[bytes, bytes]:
    """`count` 28x28 images (gratings at an angle set by the label, with noise) and their labels,
    as raw uint8 bytes; the same `seed` gives the same bytes."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    labels = labels[torch.randperm(count, generator=generator)]
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    angles = labels.float() * (math.pi / 10)
    phase = torch.rand(count, generator=generator) * 2 * math.pi
    wave = torch.sin(0.9 * (xs * torch.cos(angles)[:, None, None] + ys * torch.sin(angles)[:, None, None])
                     + phase[:, None, None])
    noise = torch.randn(count, 28, 28, generator=generator) * 0.3
    images = ((wave + noise).clamp(-1, 1) * 127.5 + 127.5).to(torch.uint8)
    return images.numpy().tobytes(), labels.to(torch.uint8).numpy().tobytes()


def idx_bytes(payload: bytes, shape: tuple[int, ...]) -> bytes:
    """An IDX file's content: images when `shape` is (count, height, width), labels when (count,)."""
    magic = IMAGE_MAGIC if len(shape) == 3 else LABEL_MAGIC
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in shape) + payload


def write_synthetic_dataset(root: str | Path, folder: str = "MNIST", compress: bool = True,
                            train_images: int = TRAIN_IMAGES, test_images: int = TEST_IMAGES) -> Path:
    """Write the four files of a dataset under `root`/`folder`/raw/ (`FashionMNIST` for
    `--dataset fashion-mnist`), gzipped as downloaded, or plain; returns `root` for --data-dir."""
    root = Path(root)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", train_images, 1), ("t10k", test_images, 2)):
        images, labels = synthetic_digits(count, seed)
        files = {f"{prefix}-images-idx3-ubyte": idx_bytes(images, (count, 28, 28)),
                 f"{prefix}-labels-idx1-ubyte": idx_bytes(labels, (count,))}
        for name, content in files.items():
            if compress:
                (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (raw / name).write_bytes(content)
    return root
