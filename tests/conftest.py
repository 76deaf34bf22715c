"""Fixtures: tiny synthetic MNIST-format data, written as real IDX files, and fast run options."""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import pytest

TRAIN_IMAGES, TEST_IMAGES = 320, 160


def synthetic_digits(count: int, seed: int) -> tuple[bytes, bytes]:
    """Images whose class is the orientation of a grating (learnable in a few steps by a small
    convnet even after global pooling), with noise; returned as raw uint8 bytes."""
    import torch

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
    magic = 2051 if len(shape) == 3 else 2049
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in shape) + payload


def write_dataset(root: Path, folder: str = "MNIST", compress: bool = True) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", TRAIN_IMAGES, 1), ("t10k", TEST_IMAGES, 2)):
        images, labels = synthetic_digits(count, seed)
        files = {f"{prefix}-images-idx3-ubyte": idx_bytes(images, (count, 28, 28)),
                 f"{prefix}-labels-idx1-ubyte": idx_bytes(labels, (count,))}
        for name, content in files.items():
            if compress:
                (raw / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (raw / name).write_bytes(content)
    return root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data folder with synthetic MNIST in the torchvision layout (gzipped files)."""
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Each test runs in its own folder, with no data folder or cache inherited from the user."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MNISTRES_DATA_DIR", raising=False)
    # The user cache beside the test's folder, not in it: loading the plugins remembers their names there
    # (for completion), and tests that check a refused command wrote nothing look at their folder.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path.parent / f"{tmp_path.name}-cache"))
    monkeypatch.delenv("MNISTRES_DEBUG", raising=False)


@pytest.fixture
def fast(data_dir) -> list[str]:
    """CLI options for a run that takes about a second: small model, tiny data, CPU."""
    return ["--data-dir", str(data_dir), "--device", "cpu", "--no-download", "--epochs", "2",
            "--batch-size", "32", "--lr", "0.01", "--set", "width=8", "--set", "blocks=1", "--set", "precise_bn=128",
            "--threads", "1"]


@pytest.fixture
def real_data_dir() -> Path:
    """The real MNIST, where MNISTRES_DATA_DIR (captured before isolation) points at it."""
    root = os.environ.get("MNISTRES_REAL_DATA_DIR")
    if not root or not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.skip("real MNIST not available (set MNISTRES_DATA_DIR to a folder holding MNIST/raw/)")
    return Path(root)


def pytest_configure(config):
    # `_isolate` removes MNISTRES_DATA_DIR from every test; keep where it pointed for the real-data tests.
    if os.environ.get("MNISTRES_DATA_DIR"):
        os.environ.setdefault("MNISTRES_REAL_DATA_DIR", os.environ["MNISTRES_DATA_DIR"])
