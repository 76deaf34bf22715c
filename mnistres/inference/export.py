"""`mnistres export`: a checkpoint as a self-contained inference artefact.

The artefact takes what an image file gives after `ToTensor()`: float32 images (N, 1, 28, 28)
with pixel values in [0, 1], white digit on black in MNIST's form (see `mnistres.images`), and
returns the 10 logits per image. The dataset normalisation is inside it, so it needs neither
mnistres nor the training config:

    .pt2   torch.export program:  torch.export.load("model.pt2").module()(images)
    .onnx  ONNX (dynamo exporter; needs the onnx and onnxscript packages), e.g. onnxruntime

After writing, the artefact is loaded back and its outputs compared with the checkpoint's
on test images (the dataset's test split when it is at hand, else random images).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistres.core import atomic
from mnistres.errors import ConfigError, DataError
from mnistres.inference.trained import load_trained

FORMATS = {".pt2": "torch.export", ".onnx": "ONNX"}
CHECK_IMAGES = 1000  # test images the artefact is compared on


class Inference(nn.Module):
    """The trained network with the dataset normalisation in front: [0, 1] images -> logits."""

    def __init__(self, network: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)


def export(checkpoint: str | os.PathLike, output: str | os.PathLike, *, data_dir: str | None = None,
           check_images: int = CHECK_IMAGES) -> dict[str, Any]:
    """Write the artefact, check it against the checkpoint, and say how they compared."""
    target = Path(output)
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        raise ConfigError(f"-o {target}: the file name must end in .pt2 (torch.export) or .onnx (ONNX)")
    if kind == "ONNX":
        _require_dynamo_exporter()  # first: on an older torch, installing the packages would not help
        _require("onnx", "onnxscript")
    if target.is_dir():
        raise ConfigError(f"-o {target} is a folder; give a file path ending in {target.suffix}")
    atomic.check_place(target.parent, "output folder")  # a file in the way, or no permission: before the work
    if not target.parent.is_dir():
        raise ConfigError(f"-o {target}: folder {target.parent} does not exist")
    trained = load_trained(checkpoint, device="cpu")
    model = Inference(trained.network.to(memory_format=torch.contiguous_format).float(), trained.mean,
                      trained.std).eval()
    example = torch.rand(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    # Serialised in memory (the model is a few MB) and written by `atomic`: torch's own file writers
    # abort the whole process when the disk is full; our write fails in one line instead.
    if kind == "torch.export":
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        artefact = buffer.getvalue()
    else:
        artefact = _onnx_bytes(model, example, batch)
    atomic.write_bytes(target, artefact)
    images, source = _check_inputs(trained, data_dir, check_images)
    with torch.inference_mode():
        expected = model(images)
    produced = _run(target, kind, images)
    result = {"checkpoint": trained.path, "output": str(target), "format": kind, "checked_on": source,
              "input": "float32 (N, 1, 28, 28), pixel values 0-1, white digit on black", "output_values": "logits (N, 10)"}
    if produced is None:
        result.update(checked_images=0, note="onnxruntime is not installed (or cannot be imported): the ONNX file "
                                             "was not run")
        return result
    difference = float((produced - expected).abs().max())
    agreement = float((produced.argmax(1) == expected.argmax(1)).float().mean())
    result.update(checked_images=len(images), max_abs_difference=difference, same_prediction=agreement)
    if agreement < 1.0 or difference > 1e-3:
        raise DataError(f"{target} was written but does not reproduce the checkpoint: max |difference| "
                        f"{difference:.2g}, same prediction on {agreement:.1%} of {len(images)} images")
    return result


def _onnx_bytes(model: nn.Module, example: torch.Tensor, batch: Any) -> bytes:
    """The ONNX model with its weights inside, as bytes (the dynamo exporter's program, serialised)."""
    import contextlib

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter reports its progress on stdout
            program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                        input_names=["images"], output_names=["logits"], verbose=False)
    except ImportError as error:
        # torch's exporter imports the onnxscript API of its own version (torch 2.11+: onnxscript 0.6 or later)
        # and onnx_ir: an onnxscript too old for this torch lacks one of them.
        missing = error.name or str(error)
        raise ConfigError(f"ONNX export needs {missing}, which torch {torch.__version__}'s exporter imports: "
                          f"pip install --upgrade onnx onnxscript") from None
    return program.model_proto.SerializeToString()


def _require(*modules: str) -> None:
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"ONNX export needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}: "
                          f"pip install {' '.join(missing)}")


def _require_dynamo_exporter() -> None:
    """The dynamo exporter (`torch.onnx.export(..., dynamo=True)`) came with PyTorch 2.5; mnistres
    accepts 2.4, whose export would fail on the unknown keyword with a traceback."""
    import inspect

    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise ConfigError(f"ONNX export needs PyTorch 2.5 or later (this is {torch.__version__}); "
                          f"-o FILE.pt2 (torch.export) works with this one")


def _check_inputs(trained: Any, data_dir: str | None, count: int) -> tuple[torch.Tensor, str]:
    """Test images of the checkpoint's dataset as [0, 1] floats, or random images if it is not at hand."""
    from mnistres.train import data

    root = trained.data_root(data_dir)
    try:
        images, _ = data.load_split(trained.run_config.dataset, root, "test", download=False)
    except (DataError, ConfigError):
        generator = torch.Generator().manual_seed(0)
        return torch.rand(count, 1, 28, 28, generator=generator), f"{count} random images (no test set found in {root})"
    picked = images[:count].float() / 255.0
    return picked, f"the first {len(picked):,} {trained.run_config.dataset} test images"


def _run(path: Path, kind: str, images: torch.Tensor) -> torch.Tensor | None:
    """The artefact's outputs, computed by loading it back as its users would."""
    if kind == "torch.export":
        loaded = torch.export.load(str(path)).module()
        with torch.inference_mode():
            return loaded(images)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    return torch.from_numpy(logits)
