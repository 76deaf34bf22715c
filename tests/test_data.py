"""IDX reading, splits and the on-device loader."""

from __future__ import annotations

import gzip
import stat

import pytest
import torch

from conftest import TEST_IMAGES, TRAIN_IMAGES, write_dataset
from mnistres.train import data
from mnistres.errors import ConfigError, DataError

CPU = torch.device("cpu")


def test_reads_gz_and_plain_alike(tmp_path, data_dir):
    plain = write_dataset(tmp_path / "plain", compress=False)
    a = data.load_split("mnist", data_dir, "train", download=False)
    b = data.load_split("mnist", plain, "train", download=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (TRAIN_IMAGES, 1, 28, 28) and a[0].dtype == torch.uint8


def test_read_only_folder(tmp_path):
    root = write_dataset(tmp_path / "ro")
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        images, labels = data.load_split("mnist", root, "test", download=True)
        assert len(images) == len(labels) == TEST_IMAGES
    finally:
        for path in root.rglob("*"):
            path.chmod(stat.S_IRWXU)


def test_fashion_layout(tmp_path):
    root = write_dataset(tmp_path, folder="FashionMNIST")
    assert len(data.load_split("fashion-mnist", root, "test", download=False)[1]) == TEST_IMAGES


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MNISTRES_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    assert data.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("MNISTRES_DATA_DIR")
    assert data.resolve_data_dir(None) == data.default_data_dir()


def test_subset_and_holdout(data_dir):
    split = data.prepare("mnist", data_dir, download=False, train_size=100, val_split=0.25, seed=3, device=CPU)
    assert len(split.train) == 100 and len(split.val) == TRAIN_IMAGES // 4 and split.val_name == "held-out"
    same = data.prepare("mnist", data_dir, download=False, train_size=100, val_split=0.25, seed=3, device=CPU)
    assert torch.equal(split.train.images, same.train.images)
    other = data.prepare("mnist", data_dir, download=False, train_size=100, val_split=0.25, seed=4, device=CPU)
    assert not torch.equal(split.train.images, other.train.images)
    # held-out and training images never overlap
    train_set = {bytes(img.numpy()) for img in split.train.images}
    assert not any(bytes(img.numpy()) in train_set for img in split.val.images)
    full = data.prepare("mnist", data_dir, download=False, train_size=None, val_split=0.0, seed=0, device=CPU)
    assert len(full.train) == TRAIN_IMAGES and len(full.val) == TEST_IMAGES and full.val_name == "test"


def test_too_large_subset(data_dir):
    with pytest.raises(ConfigError, match="more than the"):
        data.prepare("mnist", data_dir, download=False, train_size=TRAIN_IMAGES + 1, val_split=0.0, seed=0,
                     device=CPU)


def test_batches_visit_every_image_once_per_epoch(data_dir):
    split = data.prepare("mnist", data_dir, download=False, train_size=None, val_split=0.0, seed=0, device=CPU)
    batches = data.Batches(split.train, 48, mean=0.0, std=1.0 / 255, shuffle=True,
                           generator=torch.Generator().manual_seed(0))
    assert len(batches) == -(-TRAIN_IMAGES // 48)
    for _ in range(2):
        seen = torch.cat([x.flatten(1) for x, _ in batches])  # scale 1/(255*std) = 1: raw pixel values
        assert seen.shape[0] == TRAIN_IMAGES
        assert sorted(map(tuple, seen.long().tolist())) == sorted(map(tuple, split.train.images.flatten(1).long().tolist()))


def test_normalisation_on_device(data_dir):
    split = data.prepare("mnist", data_dir, download=False, train_size=None, val_split=0.0, seed=0, device=CPU)
    x, y = next(iter(data.Batches(split.train, 32, mean=0.5, std=0.25)))
    expected = (split.train.images[:32].float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_random_shift_moves_content_within_two_pixels():
    image = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    image[0, 0, 14, 14] = 255
    shifted = data.random_shift(image.repeat(200, 1, 1, 1), 2, torch.Generator().manual_seed(0))
    positions = {tuple((s[0] == 255).nonzero()[0].tolist()) for s in shifted}
    assert positions == {(r, c) for r in range(12, 17) for c in range(12, 17)}


@pytest.mark.parametrize("damage, fragment", [
    (lambda b: b[:4] and b"\x00\x00\x08\x04" + b[4:], "magic number"),
    (lambda b: b[:-100], "truncated"),
    (lambda b: b[:6], "too short"),
])
def test_corrupt_idx(tmp_path, damage, fragment):
    root = write_dataset(tmp_path)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    with pytest.raises(DataError, match=fragment):
        data.load_split("mnist", root, "train", download=False)


def test_image_label_count_mismatch(tmp_path):
    from conftest import idx_bytes

    root = write_dataset(tmp_path)
    labels = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(bytes(10), (10,))))
    with pytest.raises(DataError, match="labels"):
        data.load_split("mnist", root, "train", download=False)


def test_random_warp_warps_in_batches_reproducibly():
    from mnistres.train.data import Warp, random_warp

    images = torch.zeros(6, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 10:18, 12:16] = 255  # an upright bar in the middle
    same = random_warp(images, Warp(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, images.float())  # nothing asked: the identity warp
    for warp in (Warp(30.0, 0.2, 3.0), Warp(elastic=1.0), Warp(10.0, 0.1, 2.0, elastic=1.0, elastic_sigma=6.0)):
        first = random_warp(images, warp, torch.Generator().manual_seed(1))
        again = random_warp(images, warp, torch.Generator().manual_seed(1))
        assert first.shape == images.shape and first.dtype == torch.float32
        torch.testing.assert_close(first, again)
        assert float(first.min()) >= 0 and float(first.max()) <= 255 + 1e-3  # bilinear: within rounding
        assert not torch.equal(first[0], first[1])  # each image its own draw
        # The warps move the bar but keep about its ink.
        ink = first.sum(dim=(1, 2, 3)) / images.float().sum(dim=(1, 2, 3))
        assert float(ink.min()) > 0.6 and float(ink.max()) < 1.5, warp
    turned = random_warp(images, Warp(rotate=90.0), torch.Generator().manual_seed(2))
    assert float((turned - images.float()).abs().sum()) > 0
    # An affine warp draws 4 numbers per image, before the elastic field's: the affine part of a warp
    # is the same with and without elastic distortion, and runs without it draw as before.
    affine_only = random_warp(images, Warp(rotate=30.0), torch.Generator().manual_seed(3))
    both = random_warp(images, Warp(rotate=30.0, elastic=0.5), torch.Generator().manual_seed(3))
    assert 0 < float((both - affine_only).abs().mean()) < float((affine_only - images.float()).abs().mean())


@pytest.mark.parametrize("rms, sigma", [(1.0, 4.0), (2.5, 2.0), (0.5, 8.0)])
def test_elastic_field_is_smooth_and_as_large_as_asked(rms, sigma):
    from mnistres.train.data import elastic_field

    field = elastic_field(400, 28, 28, rms, sigma, torch.Generator().manual_seed(0))
    assert field.shape == (400, 28, 28, 2)
    torch.testing.assert_close(field, elastic_field(400, 28, 28, rms, sigma, torch.Generator().manual_seed(0)))
    inner = field[:, 12:16, 12:16]  # away from the edges, where the blur sees a whole kernel of noise
    measured = float(inner.pow(2).mean().sqrt())
    assert abs(measured - rms) < 0.1 * rms, measured
    # Smooth: neighbouring pixels move nearly together, more so for a wider blur.
    step = float((field[:, :, 1:] - field[:, :, :-1]).pow(2).mean().sqrt())
    assert step < rms * 1.2 / sigma, step


def test_warp_settings_are_checked_and_train(data_dir, tmp_path):
    from mnistres.config import RunConfig, from_dict
    from mnistres.errors import ConfigError
    from mnistres.trainer import train

    for bad in ({"rotate": 200}, {"zoom": -0.1}, {"elastic": -1}, {"elastic": 20}, {"elastic_sigma": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            from_dict(bad)
    config = RunConfig(data_dir=str(data_dir), download=False, device="cpu", epochs=1, batch_size=32, width=8, blocks=1,
                       precise_bn=0, threads=1, rotate=10, zoom=0.1, translate=2, out_dir=str(tmp_path), name="warped")
    plain = train(config.replace(rotate=0, zoom=0, translate=0, name="plain"))
    warped = train(config)
    elastic = train(config.replace(elastic=1.5, name="elastic"))
    assert warped.status == elastic.status == "completed"
    losses = {run.history[0]["train_loss"] for run in (plain, warped, elastic)}
    assert len(losses) == 3  # each warp changes what the model sees


def test_shrink_averages_into_a_smaller_image_in_the_same_layout():
    from mnistres.train.data import shrink

    background = torch.full((3, 1, 28, 28), -0.42).contiguous(memory_format=torch.channels_last)
    small = shrink(background, 14)
    assert small.shape == (3, 1, 14, 14) and small.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(small, torch.full((3, 1, 14, 14), -0.42))  # a flat image stays flat
    images = torch.zeros(2, 1, 28, 28)
    images[:, :, 8:20, 10:18] = 1.0  # a block of ink
    for side in (8, 14, 16, 20):
        shrunk = shrink(images, side)
        assert shrunk.shape == (2, 1, side, side) and shrunk.is_contiguous()
        # Each output pixel averages the pixels it covers: the ink's share of the area is about kept.
        assert abs(float(shrunk.mean()) - float(images.mean())) < 0.02, side


@pytest.mark.parametrize("side, lowest, highest", [(24, 0, 4), (20, 2, 6), (27, 0, 0)])
def test_random_crop_takes_a_window_near_the_centre_of_each_image(side, lowest, highest):
    from mnistres.train.data import random_crop

    images = torch.arange(64 * 28 * 28, dtype=torch.float32).reshape(64, 1, 28, 28).contiguous(
        memory_format=torch.channels_last)
    windows = random_crop(images, side, torch.Generator().manual_seed(3))
    assert windows.shape == (64, 1, side, side) and windows.is_contiguous(memory_format=torch.channels_last)
    offsets = set()
    for image, window in zip(images, windows):
        # Pixel values count up row by row: a window's first pixel says where it was cut.
        top, left = divmod(int(window[0, 0, 0]) - int(image[0, 0, 0]), 28)
        assert torch.equal(window, image[:, top:top + side, left:left + side])  # the digit at its own scale
        offsets.update({top, left})
    # Centred, moved by up to 2 pixels each way (less where the window leaves less room), every position drawn.
    assert offsets == set(range(lowest, highest + 1))


def test_random_crop_draws_for_the_whole_batch():
    from mnistres.train.data import random_crop

    images = torch.arange(5 * 28 * 28, dtype=torch.float32).reshape(5, 1, 28, 28).contiguous(
        memory_format=torch.channels_last)
    windows = random_crop(images, 24, torch.Generator().manual_seed(3))
    # One process's draws, cut into two processes' parts: the parts are the windows one process takes.
    parts = [random_crop(images[part], 24, torch.Generator().manual_seed(3), whole=5, part=part)
             for part in (slice(0, 3), slice(3, 5))]
    assert torch.equal(torch.cat(parts), windows)
    empty = random_crop(images[5:], 24, torch.Generator().manual_seed(3), whole=5, part=slice(5, 5))
    assert empty.shape == (0, 1, 24, 24)
