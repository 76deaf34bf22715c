"""Your own digit images in MNIST's form: reading files, and the normalisation that made MNIST.

MNIST digits are white ink on black, their longer side scaled to 20 pixels keeping the aspect
ratio (with anti-aliasing, so strokes keep grey edges), and pasted into a 28x28 field so that
their centre of mass sits at the centre. A photo or a scan is dark ink on light paper, on a
large canvas, anywhere in it; a model trained on MNIST sees such an image as noise. `to_mnist`
redoes MNIST's steps: grayscale, invert a light background, crop to the ink, scale the longer
side to 20 pixels, paste by centre of mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from mnistres.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ARRAY_SUFFIXES = (".npy", ".npz")
SIDE, BOX = 28, 20  # MNIST's field, and the box its digits are scaled into
MIN_CONTRAST = 32.0  # ink must stand this far (of 255) above the background, or the image is blank
INK_SHARE = 0.25  # a pixel is ink when it reaches this share of the darkest ink (for the crop)
NOISE_SHARE = 0.1  # fainter than this share of the ink is paper texture or JPEG noise: set to black


@dataclass
class Sample:
    """One image from a file: an array may hold many, so `name` says which one."""

    name: str  # the file, with [i] or :key[i] for an image inside an array file
    pixels: np.ndarray | None  # (28, 28) uint8 in MNIST's form, or None if it could not be used
    error: str = ""  # why not, in a few words


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files to read: each path as given, or a folder's readable files (sorted, not recursive).

    A path that does not exist is a mistake in the command: one error before anything runs.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + ARRAY_SUFFIXES)
            if not inside:
                raise ConfigError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)})")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path} does not exist")
    return found


def read(path: Path, preprocess: bool = True) -> list[Sample]:
    """Every image in one file, each in MNIST's form (or with the reason it is not usable)."""
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            arrays = [(str(path), _read_picture(path))]
        elif suffix in ARRAY_SUFFIXES:
            arrays = _read_arrays(path)
        else:
            return [Sample(str(path), None, f"not a format mnistres reads ({', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)})")]
    except Exception as error:  # noqa: BLE001 - any failure to decode is this file's problem, not the run's
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return [Sample(str(path), None, f"cannot read it: {reason}")]
    samples = []
    for name, gray in arrays:
        try:
            pixels = to_mnist(gray) if preprocess else as_mnist(gray)
        except ValueError as problem:
            samples.append(Sample(name, None, str(problem)))
        else:
            samples.append(Sample(name, pixels))
    return samples


def _read_picture(path: Path) -> np.ndarray:
    """A PNG, JPEG or BMP as grayscale 0-255, upright (EXIF rotation applied), transparency on white."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()  # decode now, so a truncated file fails here
        picture = ImageOps.exif_transpose(opened)
        if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
            rgba = picture.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            picture = Image.alpha_composite(white, rgba)
        return np.asarray(picture.convert("L"), dtype=np.float64)


def _read_arrays(path: Path) -> list[tuple[str, np.ndarray]]:
    """The 28x28 (or any 2-D) images in a .npy (one image, or a stack) or .npz (each array in it)."""
    loaded = np.load(path, allow_pickle=False)  # never unpickle: an array file must not run code
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            named = [(f"{path}:{key}", loaded[key]) for key in loaded.files]
    else:
        named = [(str(path), loaded)]
    arrays = []
    for name, array in named:
        if array.ndim == 2:
            arrays.append((name, _gray_scale(array, name)))
        elif array.ndim == 3:
            arrays.extend((f"{name}[{i}]", _gray_scale(image, name)) for i, image in enumerate(array))
        else:
            raise ValueError(f"{name} has shape {array.shape}; expected (H, W) or (N, H, W)")
    return arrays


def _gray_scale(array: np.ndarray, name: str) -> np.ndarray:
    """Pixel values as 0-255 floats: integer arrays as they are, float arrays in [0, 1] scaled up."""
    if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)):
        raise ValueError(f"{name} holds {array.dtype} values, not pixel values")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if np.issubdtype(array.dtype, np.floating) and values.size and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(values, 0.0, 255.0)


def as_mnist(gray: np.ndarray) -> np.ndarray:
    """--no-preprocess: the image must already be MNIST-like (28x28, light digit on dark)."""
    if gray.shape != (SIDE, SIDE):
        raise ValueError(f"is {gray.shape[1]}x{gray.shape[0]} pixels; without preprocessing it must be 28x28")
    return np.rint(gray).astype(np.uint8)


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """A grayscale image (0-255) of one digit, in MNIST's form: (28, 28) uint8, white on black."""
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"has shape {gray.shape}; expected a 2-D image")
    # 1. Paper or ink? The border is mostly background: if it is light, the ink is dark; invert.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127.5:
        gray = 255.0 - gray
        border = 255.0 - border
    # 2. Subtract the background's level and stretch the ink to full white.
    ink = np.clip(gray - np.median(border), 0.0, None)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise ValueError("no digit found: the image is blank or has too little contrast")
    # Stretch so that the body of the strokes is white, as in MNIST: by a high percentile of the
    # ink, not its maximum, which a few JPEG or sensor specks can set.
    level = float(np.percentile(ink[ink >= INK_SHARE * strongest], 90))
    ink = np.clip(ink * (255.0 / level), 0.0, 255.0)
    ink[ink < NOISE_SHARE * 255.0] = 0.0
    # 3. Crop to the ink's bounding box.
    rows = np.flatnonzero((ink >= INK_SHARE * 255.0).any(axis=1))
    cols = np.flatnonzero((ink >= INK_SHARE * 255.0).any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # 4. Scale the longer side to 20 pixels, keeping the aspect ratio, with anti-aliasing.
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = _resize(ink, size)
    # 5. Paste into 28x28 with the centre of mass at the centre (kept whole inside the field).
    total = float(digit.sum())
    ys, xs = np.indices(digit.shape)
    centre_y = float((ys * digit).sum()) / total if total else (digit.shape[0] - 1) / 2
    centre_x = float((xs * digit).sum()) / total if total else (digit.shape[1] - 1) / 2
    top = min(max(int(math.floor((SIDE - 1) / 2 - centre_y + 0.5)), 0), SIDE - digit.shape[0])
    left = min(max(int(math.floor((SIDE - 1) / 2 - centre_x + 0.5)), 0), SIDE - digit.shape[1])
    field = np.zeros((SIDE, SIDE), dtype=np.float64)
    field[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return np.rint(np.clip(field, 0.0, 255.0)).astype(np.uint8)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with anti-aliasing (so a large photo's strokes average, not alias)."""
    import torch

    tensor = torch.from_numpy(image.astype(np.float32))[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0, 0].clamp(0, 255).double().numpy()
