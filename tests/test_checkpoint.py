"""Checkpoints: safe loading, atomic saving, helpful errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnistres.core import atomic
from mnistres.train import checkpoint
from mnistres.errors import CheckpointError, WriteError


def payload():
    return {"config": {"width": 8}, "model": {"w": torch.ones(3)}, "epoch": 1}


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, payload())
    loaded = checkpoint.load(path)
    assert loaded["format"] == checkpoint.FORMAT and torch.equal(loaded["model"]["w"], torch.ones(3))
    # the file is readable by plain torch with the safe loader too
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    checkpoint.save(path, payload())
    before = path.read_bytes()

    real_write = Path.write_bytes

    def disk_full(target, data):
        real_write(target, b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device"):
        checkpoint.save(path, {**payload(), "epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_atomic_text_has_normal_permissions(tmp_path):
    target = tmp_path / "x.json"
    atomic.write_json(target, {"a": 1})
    assert target.stat().st_mode & 0o044, "files must be readable by others like a plain open() makes them"


def test_json_files_are_strict(tmp_path):
    import json

    target = tmp_path / "s.json"
    atomic.write_json(target, {"f1": float("nan"), "rows": [{"loss": float("inf")}, (1.5, 2)]})
    assert json.loads(target.read_text()) == {"f1": None, "rows": [{"loss": None}, [1.5, 2]]}
    assert "NaN" not in target.read_text() and "Infinity" not in target.read_text()


class Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("pwned"),))


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"\x89garbage" * 100), "not a readable checkpoint"),
    (lambda p: torch.save({"w": torch.ones(2)}, p), "not an mnistres checkpoint"),
    (lambda p: torch.save(torch.ones(2), p), "not an mnistres checkpoint"),
    (lambda p: torch.save({"format": checkpoint.FORMAT, "format_version": 99, "config": {}, "model": {}}, p),
     "newer"),
    (lambda p: torch.save({"format": checkpoint.FORMAT, "format_version": 1, "evil": Exploit()}, p),
     "safe load refuses"),
])
def test_bad_files_give_one_line(tmp_path, make, fragment):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(CheckpointError, match=fragment):
        checkpoint.load(path)
    assert not Path("pwned").exists(), "loading must never run code from the file"


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, payload())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load(path)


def test_missing_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="folder"):
        checkpoint.load(tmp_path)
