"""Your own digit images in MNIST's form: reading files, and the normalisation that made MNIST.

MNIST digits are white ink on black, their longer side scaled to 20 pixels keeping the aspect
ratio (with anti-aliasing, so strokes keep grey edges), and pasted into a 28x28 field so that
their centre of mass sits at the centre. A photo or a scan is dark ink on light paper, on a
large canvas, anywhere in it; a model trained on MNIST sees such an image as noise. `to_mnist`
redoes MNIST's steps: grayscale, the paper's level taken away and the ink (dark or light) stretched by
the image's own contrast, crop to the ink, scale the longer side to 20 pixels, paste by centre of mass.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import numpy as np

from mnistres.errors import ConfigError

PICTURE_FORMATS = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "BMP": (".bmp",)}  # read with Pillow
IMAGE_SUFFIXES = tuple(suffix for suffixes in PICTURE_FORMATS.values() for suffix in suffixes)
ARRAY_SUFFIXES = (".npy", ".npz")


def formats() -> str:
    """The formats mnistres reads, in words, for help texts: "PNG, JPEG, BMP, or .npy/.npz arrays of images"."""
    return f"{', '.join(PICTURE_FORMATS)}, or {'/'.join(ARRAY_SUFFIXES)} arrays of images"
# Bounds checked from a file's header, before its pixels are decoded: a small compressed file can
# claim gigapixels, and decoding it would take the whole machine's memory.
MAX_PIXELS = 50_000_000  # per picture: a 48-megapixel phone photo fits
MAX_ARRAY_VALUES = 64_000_000  # per array file: 80,000 MNIST-sized images
MAX_ARRAYS = 10_000  # arrays in one .npz
WORK_SIDE = 1024  # larger pictures are shrunk to this longer side as they are read: a digit needs 20 pixels
SIDE, BOX = 28, 20  # MNIST's field, and the box its digits are scaled into
MIN_CONTRAST = 6.0  # levels of 255 the strongest stroke must stand off the paper, whatever the grain
SIGNAL_TO_GRAIN = 6.0  # ... and, below CLEAR_CONTRAST, this many times the paper's grain (flat noise: about 3)
CLEAR_CONTRAST = 32.0  # strokes this far off the paper are read as they are; dimmer ones against the grain
INK_SHARE = 0.25  # a pixel is ink when it reaches this share of the darkest ink (for the crop)
NOISE_SHARE = 0.1  # fainter than this share of the ink is paper texture or JPEG noise: set to black


@dataclass
class Sample:
    """One image from a file: an array may hold many, so `name` says which one."""

    name: str  # the file, with [i] or :key[i] for an image inside an array file
    pixels: np.ndarray | None  # (28, 28) uint8 in MNIST's form, or None if it could not be used
    error: str = ""  # why not, in a few words


def image_files(paths: Iterable[str | Path], skipped: list[dict[str, str]] | None = None) -> list[Path]:
    """The files to read: each path as given, or a folder's readable files (sorted, not recursive).

    A path that does not exist, or is no regular file (a device, a FIFO), is a mistake in the command:
    one error before anything runs. In a folder, what is not read (another format, a subfolder, a
    device; hidden files aside) is added to `skipped` with the reason, never left out without a word.
    """
    readable = IMAGE_SUFFIXES + ARRAY_SUFFIXES
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = []
            for entry in sorted(path.iterdir()):
                if entry.name.startswith("."):
                    continue
                reason = _not_readable(entry, readable)
                if reason:
                    if skipped is not None:
                        skipped.append({"file": str(entry), "error": reason})
                    continue
                inside.append(entry)
            if not inside:
                raise ConfigError(f"{path} holds no images ({', '.join(readable)})")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        elif os.path.lexists(path) and path.exists():
            raise ConfigError(f"{path} is not a regular file (a device, FIFO or socket): give an image file")
        elif os.path.lexists(path):
            raise ConfigError(f"{path} is a link to {os.readlink(path)}, which does not exist")
        else:
            raise ConfigError(f"{path} does not exist")
    return found


def _not_readable(entry: Path, readable: tuple[str, ...]) -> str:
    """Why a folder's entry is not read ("" if it is)."""
    if entry.is_dir():
        return "a folder (folders are not searched inside; name it to read it)"
    if not entry.is_file():
        return "not a regular file (a device, FIFO, socket or broken link)"
    if entry.suffix.lower() not in readable:
        return f"not a format mnistres reads ({', '.join(readable)})"
    return ""


def read(path: Path, preprocess: bool = True) -> list[Sample]:
    """Every image in one file, each in MNIST's form (or with the reason it is not usable).

    Nothing about one file stops the others: any failure, even running out of memory, becomes
    this file's (or this image's) row.
    """
    suffix = path.suffix.lower()
    kind = "picture" if suffix in IMAGE_SUFFIXES else suffix[1:] if suffix in ARRAY_SUFFIXES else ""
    return _samples(path, str(path), kind, preprocess)


# The first bytes of each format mnistres reads: an upload has no file name to go by.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "picture"), (b"\xff\xd8\xff", "picture"), (b"BM", "picture"),
          (b"\x93NUMPY", "npy"), (b"PK\x03\x04", "npz"), (b"PK\x05\x06", "npz"))


def read_bytes(content: bytes, name: str, preprocess: bool = True) -> list[Sample]:
    """Every image in a file's bytes (an upload), told apart by its first bytes, not by a name."""
    kind = next((kind for magic, kind in _MAGIC if content.startswith(magic)), "")
    return _samples(io.BytesIO(content), name, kind, preprocess)


def _samples(source: Path | BinaryIO, name: str, kind: str, preprocess: bool) -> list[Sample]:
    try:
        if kind == "picture":
            arrays = [(name, _read_picture(source))]
        elif kind in ("npy", "npz"):
            arrays = _read_arrays(source, name, kind)
        else:
            return [Sample(name, None, f"not a format mnistres reads ({', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)})")]
    except Exception as error:  # noqa: BLE001 - any failure to decode is this file's problem, not the run's
        return [Sample(name, None, f"cannot read it: {_reason(error)}")]
    if not arrays:
        return [Sample(name, None, "holds no images")]
    samples = []
    for image_name, gray in arrays:
        try:
            pixels = to_mnist(gray()) if preprocess else as_mnist(gray())
        except ValueError as problem:
            samples.append(Sample(image_name, None, str(problem)))
        except Exception as error:  # noqa: BLE001 - e.g. MemoryError: this image's row, not the end of predict
            samples.append(Sample(image_name, None, f"cannot use it: {_reason(error)}"))
        else:
            samples.append(Sample(image_name, pixels))
    return samples


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_picture(source: Path | BinaryIO) -> Callable[[], np.ndarray]:
    """A PNG, JPEG or BMP as grayscale 0-255, upright (EXIF rotation applied), transparency on white,
    16-bit images in their own range, shrunk to WORK_SIDE as it is read."""
    from PIL import Image, ImageOps

    with Image.open(source, formats=list(PICTURE_FORMATS)) as opened:
        width, height = opened.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"it is {width}x{height} pixels, more than {MAX_PIXELS // 1_000_000} million; "
                             f"shrink or crop it first")
        if opened.format == "JPEG":
            opened.draft("L", (WORK_SIDE, WORK_SIDE))  # let the decoder shrink it by 2, 4 or 8 as it decodes
        opened.load()  # decode now, so a truncated file fails here
        picture = ImageOps.exif_transpose(opened)
        if picture.mode.startswith("I;16") or picture.mode in ("I", "F"):
            picture = _sixteen_bit_as_eight(picture)
        if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
            rgba = picture.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            picture = Image.alpha_composite(white, rgba)
        picture = picture.convert("L")
        if max(picture.size) > WORK_SIDE:
            picture.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)  # an average: strokes stay strokes
        gray = np.asarray(picture, dtype=np.float32)
    return lambda: gray


def _sixteen_bit_as_eight(picture: Any) -> Any:
    """16-bit (or 32-bit, or float) grayscale as 8-bit over its real range: converting it directly
    would clip every value above 255 to white, and a 16-bit scan would read as blank."""
    from PIL import Image

    values = np.asarray(picture, dtype=np.float32)
    if picture.mode == "F":
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    else:
        top = 65535.0 if picture.mode.startswith("I;16") or (values.size and values.max() > 255) else 255.0
    scaled = np.clip(np.nan_to_num(values) * (255.0 / top), 0, 255)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


def _read_arrays(source: Path | BinaryIO, path: str, kind: str) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """The 28x28 (or any 2-D) images in a .npy (one image, or a stack) or .npz (each array in it), from a
    file or an upload's bytes; `path` names it in messages.

    Shapes are read from the headers and bounded before any pixel is loaded; each image is turned
    into floats only when it is used.
    """
    if kind == "npy":
        if isinstance(source, Path):
            array = np.load(source, mmap_mode="r", allow_pickle=False)  # maps the file: nothing read yet
        else:
            _check_size(path, *_npy_header(source))
            source.seek(0)
            array = np.load(source, allow_pickle=False)
        named = [(path, array)]
        _check_size(path, array.shape, array.dtype)
    else:
        named = []
        with zipfile.ZipFile(source) as archive:
            members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
            if len(members) > MAX_ARRAYS:
                raise ValueError(f"it holds {len(members):,} arrays; at most {MAX_ARRAYS:,} are read")
            total = 0
            for info in members:
                with archive.open(info) as member:
                    shape, dtype = _npy_header(member)
                key = info.filename[: -len(".npy")]
                total += _check_size(f"{path}:{key}", shape, dtype)
                if total > MAX_ARRAY_VALUES:
                    raise ValueError(f"its arrays hold more than {MAX_ARRAY_VALUES:,} values together")
                named.append((f"{path}:{key}", None))
        if not isinstance(source, Path):
            source.seek(0)
        loaded = np.load(source, allow_pickle=False)  # never unpickle: an array file must not run code
        with loaded:
            named = [(name, loaded[name.rsplit(":", 1)[1]]) for name, _ in named]
    arrays: list[tuple[str, Callable[[], np.ndarray]]] = []
    for name, array in named:
        if array.ndim == 2:
            arrays.append((name, lambda array=array, name=name: _gray_scale(np.asarray(array), name)))
        elif array.ndim == 3:
            if len(array) == 0:
                raise ValueError(f"{name} holds no images (shape {array.shape})")
            arrays.extend((f"{name}[{i}]", lambda i=i, array=array, name=name: _gray_scale(np.asarray(array[i]), name))
                          for i in range(len(array)))
        else:
            raise ValueError(f"{name} has shape {array.shape}; expected (H, W) or (N, H, W)")
    return arrays


def _npy_header(stream: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a .npy inside an .npz, without reading its data."""
    version = np.lib.format.read_magic(stream)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"uses .npy format {version[0]}.{version[1]}, which holds no pixel arrays")
    shape, _fortran_order, dtype = readers[version](stream)
    return tuple(shape), dtype


def _check_size(name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The number of values, once shape and type are known to be images small enough to read."""
    if dtype.hasobject or not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{name} holds {dtype} values, not pixel values")
    values = math.prod(shape)
    if values > MAX_ARRAY_VALUES or (len(shape) >= 2 and math.prod(shape[-2:]) > MAX_PIXELS):
        raise ValueError(f"{name} has shape {shape}: more than {MAX_ARRAY_VALUES:,} values (or "
                         f"{MAX_PIXELS:,} pixels per image) are not read")
    return values


def _gray_scale(array: np.ndarray, name: str) -> np.ndarray:
    """Pixel values as 0-255 floats: integer arrays as they are, float arrays in [0, 1] scaled up."""
    if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)):
        raise ValueError(f"{name} holds {array.dtype} values, not pixel values")
    values = array.astype(np.float32)
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
    """A grayscale image (0-255) of one digit, in MNIST's form: (28, 28) uint8, white on black.

    Works from the image's own contrast, not absolute levels, so that a dim photo (pencil at gray 39 on
    paper at 79) reads as its bright scan would: the paper's level is a plane fitted to the border (which
    is mostly paper; a plane follows light falling unevenly across the page), the ink is on whichever side
    of it the image strays far from it (dark on light, or chalk on a blackboard), and only an image whose
    strongest stroke is not clearly above its grain is refused as flat.
    """
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"has shape {gray.shape}; expected a 2-D image")
    # 1. The paper: a plane through the border's levels; what stands off it is ink, or grain.
    residual = gray - _paper(gray)
    smooth = _box_blur(residual, max(1, round(min(gray.shape) / 100)))  # strokes stay, grain averages out
    grain, raw_grain = _spread(_border(smooth)), _spread(_border(residual))  # the paper's grain, smoothed and not
    # 2. Ink on the side the image strays furthest: dark on light paper, or light on a dark ground (where
    # nothing strays clearly, as in a busy picture whose border is no plain paper: dark ink on a light border).
    stray = 4.0 * grain
    dark, light = float(np.clip(-smooth - stray, 0, None).sum()), float(np.clip(smooth - stray, 0, None).sum())
    side = (-1.0 if dark > light else 1.0) if dark or light else (-1.0 if np.median(_border(gray)) > 127.5 else 1.0)
    ink, ink_smooth = np.clip(side * residual, 0.0, None), np.clip(side * smooth, 0.0, None)
    contrast = float(np.percentile(ink_smooth, 99.9)) if ink_smooth.size > 1000 else float(ink_smooth.max())
    # The border's spread is the paper's grain when the strokes stand well above it; in a busy picture whose
    # border is no plain paper it is not, and a clear one (CLEAR_CONTRAST) is read as it is.
    grainy = contrast >= SIGNAL_TO_GRAIN * grain
    if contrast < MIN_CONTRAST or (contrast < CLEAR_CONTRAST and not grainy):
        raise ValueError(f"no digit found: the image is flat (its strongest stroke stands {contrast:.0f} levels of "
                         f"255 off the paper, against grain of {grain:.1f}; a digit needs {MIN_CONTRAST:.0f} levels "
                         f"and {SIGNAL_TO_GRAIN:.0f} times the grain)")
    # 3. Stretch so that the body of the strokes is white, as in MNIST: by a high percentile of the ink,
    # not its maximum, which a few JPEG or sensor specks can set; then the grain below it goes to black.
    level = float(np.percentile(ink[ink_smooth >= INK_SHARE * contrast], 90))
    gain = 255.0 / level
    if grainy and raw_grain * gain > NOISE_SHARE * 255.0:  # grain that stretching makes loud: smoothed strokes
        ink, raw_grain = ink_smooth, grain
        gain = 255.0 / float(np.percentile(ink[ink >= INK_SHARE * contrast], 90))
    ink = np.clip(ink * gain, 0.0, 255.0)
    ink[ink < max(NOISE_SHARE * 255.0, 3.0 * raw_grain * gain if grainy else 0.0)] = 0.0
    # 4. Crop to the strokes' bounding box: pixels of strong ink, on grainy paper only those with strokes
    # around them (a lone speck of grain has none, so it does not stretch the box).
    strokes = ink >= INK_SHARE * 255.0
    if grainy:
        strokes &= ink_smooth >= max(INK_SHARE * contrast / 2, 4.0 * grain)
    if not strokes.any():  # only grain reached the strokes' level
        raise ValueError(f"no digit found: nothing stands clearly off the paper's grain ({grain:.1f} levels)")
    rows, cols = np.flatnonzero(strokes.any(axis=1)), np.flatnonzero(strokes.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    # 5. Scale the longer side to 20 pixels, keeping the aspect ratio, with anti-aliasing.
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = _resize(ink, size)
    # 6. Paste into 28x28 with the centre of mass at the centre (kept whole inside the field).
    total = float(digit.sum())
    ys, xs = np.indices(digit.shape)
    centre_y = float((ys * digit).sum()) / total if total else (digit.shape[0] - 1) / 2
    centre_x = float((xs * digit).sum()) / total if total else (digit.shape[1] - 1) / 2
    top = min(max(int(math.floor((SIDE - 1) / 2 - centre_y + 0.5)), 0), SIDE - digit.shape[0])
    left = min(max(int(math.floor((SIDE - 1) / 2 - centre_x + 0.5)), 0), SIDE - digit.shape[1])
    field = np.zeros((SIDE, SIDE), dtype=np.float32)
    field[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return np.rint(np.clip(field, 0.0, 255.0)).astype(np.uint8)


def _spread(values: np.ndarray) -> float:
    """The standard deviation of the bulk of `values`, from their median absolute deviation (strokes that
    reach the border do not count)."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _border(image: np.ndarray) -> np.ndarray:
    """The outermost pixels of each side (a 28x28 field's border, a photo's edges): mostly paper."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _paper(gray: np.ndarray) -> np.ndarray:
    """The paper's level at every pixel: a plane a + b*x + c*y fitted to the border's pixels, once more
    without those far off it (a stroke that reaches the edge); a plane follows light that falls unevenly."""
    height, width = gray.shape
    ys, xs = np.indices(gray.shape, dtype=np.float64)
    values, across, down = _border(gray), _border(xs / max(width, 1)), _border(ys / max(height, 1))
    keep = np.ones(values.shape, dtype=bool)
    for _ in range(2):
        design = np.stack([np.ones(int(keep.sum())), across[keep], down[keep]], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, values[keep], rcond=None)
        fitted = coefficients[0] + coefficients[1] * across + coefficients[2] * down
        off = np.abs(values - fitted)
        spread = 1.4826 * float(np.median(off)) + 1.0  # (+1: a clean border has none, yet levels are whole)
        keep = off <= 3.0 * spread
        if keep.sum() < 3:
            break
    return coefficients[0] + coefficients[1] * (xs / max(width, 1)) + coefficients[2] * (ys / max(height, 1))


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """The mean over a (2r+1)-pixel square around each pixel (edges: the square within the image)."""
    padded = np.pad(image.astype(np.float64), radius, mode="edge")
    summed = padded.cumsum(axis=0).cumsum(axis=1)
    summed = np.pad(summed, ((1, 0), (1, 0)))
    side = 2 * radius + 1
    total = summed[side:, side:] - summed[:-side, side:] - summed[side:, :-side] + summed[:-side, :-side]
    return total / (side * side)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with anti-aliasing (so a large photo's strokes average, not alias)."""
    import torch

    tensor = torch.from_numpy(image.astype(np.float32))[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0, 0].clamp(0, 255).numpy()
