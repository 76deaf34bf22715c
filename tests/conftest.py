"""Fixtures: tiny synthetic MNIST-format data, written as real IDX files, and fast run options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The synthetic data live in the package, for plugins' tests too; these names are what our tests import.
from mnistres.testing import TEST_IMAGES, TRAIN_IMAGES, idx_bytes  # noqa: F401
from mnistres.testing import write_synthetic_dataset as write_dataset


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
    # amp=auto takes bf16 on CPUs with bf16 in hardware: the suite's runs stay in float32 on every CPU, and
    # test_precision.py says which CPU it means.
    monkeypatch.setenv("MNISTRES_CPU_BF16", "0")
    # threads=0 follows the cores other processes leave free, which on a test machine changes from one moment
    # to the next: the suite's runs take the machine as quiet, and test_cpus.py says otherwise where it means to.
    monkeypatch.setenv("MNISTRES_CPU_OTHERS", "0")


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


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir) -> Path:
    """For the serve tests: runs/ with one run (`one`) and a sweep (`lr`, two points)."""
    from serving import make_runs

    return make_runs(tmp_path_factory.mktemp("served"), data_dir)


@pytest.fixture(scope="module")
def site(runs):
    """For the serve tests: a server of `runs` on a free port, for the module's tests."""
    from serving import running

    with running(runs) as serving:
        yield serving
