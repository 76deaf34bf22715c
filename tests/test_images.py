"""Your own images: MNIST's normalisation (`images.to_mnist`), reading files, `predict` and
`eval --images`, with a model trained here on digits drawn with a font.

The photo-like versions of each digit carry what a phone picture or scan brings: dark ink on
light paper, a large canvas, the digit off-centre, thicker strokes, uneven paper and JPEG
noise. Each must be classified as the clean, MNIST-form version of the same drawing is.
"""

from __future__ import annotations

import json
from pathlib import Path
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from typer.testing import CliRunner

from mnistres.inference import images
from mnistres.cli import app

runner = CliRunner()
CLASSES = 10


def invoke(*args: str):
    return runner.invoke(app, list(args))


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or built without FreeType
        pytest.skip("needs Pillow's scalable default font (Pillow >= 10.1 with FreeType)")


def ink(digit: int, size: int = 60, angle: float = 0.0, stroke: int = 1) -> np.ndarray:
    """A digit as white ink on black (0-255 floats), drawn with a font, with a margin around it."""
    canvas = Image.new("L", (3 * size, 3 * size), 0)
    ImageDraw.Draw(canvas).text((size, size // 2), str(digit), fill=255, font=font(size),
                                stroke_width=stroke, stroke_fill=255)
    return np.asarray(canvas.rotate(angle, resample=Image.BILINEAR), dtype=np.float64)


def photo(drawing: np.ndarray, rng: np.random.Generator, canvas=(420, 320)) -> np.ndarray:
    """The drawing as a photo of paper: dark ink on light, uneven paper, off-centre on a large canvas."""
    height, width = canvas
    ys, xs = np.mgrid[0:height, 0:width]
    paper = 205 + 30 * (xs / width) + rng.normal(0, 4, size=(height, width))  # light, shaded, grainy
    top = int(rng.integers(10, height - drawing.shape[0] - 10))
    left = int(rng.integers(10, width - drawing.shape[1] - 10))
    share = np.zeros((height, width))
    share[top:top + drawing.shape[0], left:left + drawing.shape[1]] = drawing / 255.0
    return np.clip(paper * (1 - share) + 35 * share, 0, 255)


def save(array: np.ndarray, path, **options) -> None:
    Image.fromarray(np.rint(array).astype(np.uint8)).save(path, **options)


def glyph_set(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` MNIST-form digits drawn at varied sizes, slants and stroke widths, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % CLASSES
    pixels = [images.to_mnist(ink(int(d), size=int(rng.integers(40, 80)), angle=float(rng.uniform(-12, 12)),
                                  stroke=int(rng.integers(0, 6)))) for d in labels]
    return np.stack(pixels), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained on font digits in MNIST's form, and the folder it lives in."""
    from conftest import idx_bytes

    from mnistres.config import RunConfig
    from mnistres.trainer import train

    root = tmp_path_factory.mktemp("glyphs")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", 1500, 1), ("t10k", 200, 2)):
        pixels, labels = glyph_set(count, seed)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(pixels.tobytes(), (count, 28, 28)))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels.astype(np.uint8).tobytes(), (count,)))
    config = RunConfig(data_dir=str(root), download=False, device="cpu", epochs=4, width=16, blocks=1,
                       batch_size=32, lr=0.005, precise_bn=256, threads=1, callbacks=(), augment=True,
                       out_dir=str(root / "runs"), name="glyphs")
    result = train(config, console=Console(quiet=True))
    assert result.history[-1]["val_acc"] >= 0.9, result.history  # a model worth comparing predictions of
    return root / "runs" / "glyphs" / "best.pt"


# --- the normalisation ------------------------------------------------------------------------


def test_to_mnist_gives_mnist_geometry():
    digit = images.to_mnist(ink(7, size=90))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8 and digit.max() == 255
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) in (20, 21)  # longer side 20 (+ an anti-aliased edge)
    ys, xs = np.indices(digit.shape)
    weight = digit.astype(float)
    centre = ((ys * weight).sum() / weight.sum(), (xs * weight).sum() / weight.sum())
    assert math.dist(centre, (13.5, 13.5)) < 1.0
    assert digit[0].max() == digit[-1].max() == 0  # black around the digit


def test_to_mnist_inverts_light_paper_and_ignores_where_the_digit_is():
    drawing = ink(4, size=70)
    dark = images.to_mnist(drawing)
    light = images.to_mnist(photo(drawing, np.random.default_rng(0)))
    assert np.abs(dark.astype(int) - light.astype(int)).mean() < 12  # of 255: the same digit, same place


def test_to_mnist_refuses_a_blank_image():
    with pytest.raises(ValueError, match="no digit found"):
        images.to_mnist(np.full((50, 60), 230.0) + np.random.default_rng(0).normal(0, 3, (50, 60)))


def dim(digit: np.ndarray, contrast: float, *, paper: float = 79.0, noise: float = 0.0, inverted: bool = False,
        gradient: float = 0.0, rng: np.random.Generator | None = None, side: int = 84) -> np.ndarray:
    """A 28x28 MNIST-form digit as a dim photo of it: `side` pixels square, ink `contrast` levels darker than
    the paper (lighter, `inverted`: chalk on a blackboard), the paper's level rising by `gradient` levels from
    left to right (light falling unevenly), with sensor noise of `noise` levels; whole levels, as a file has."""
    big = np.asarray(Image.fromarray(np.asarray(digit, np.uint8)).resize((side, side), Image.BILINEAR), float) / 255
    ground = paper + gradient * np.linspace(-0.5, 0.5, side)[None, :]
    image = ground + (1.0 if inverted else -1.0) * contrast * big
    if noise:
        image = image + (rng or np.random.default_rng(0)).normal(0.0, noise, image.shape)
    return np.clip(np.rint(image), 0, 255)


DIM_CASES = {  # name: (contrast, options)
    **{f"{c} levels": (c, {}) for c in (40, 20, 10)},
    **{f"{c} levels, noise": (c, {"noise": 3.0}) for c in (40, 20, 10)},
    "20 levels, inverted": (20, {"inverted": True, "paper": 40.0}),
    "20 levels, uneven light": (20, {"gradient": 80.0, "paper": 110.0}),
    "20 levels, uneven light, noise": (20, {"gradient": 80.0, "paper": 110.0, "noise": 3.0}),
}


@pytest.mark.parametrize("case", list(DIM_CASES))
def test_a_dim_photo_comes_out_as_its_full_contrast_scan(case):
    """Pencil on paper in poor light (gray 39 on 79, say) is the same digit as its bright scan once in MNIST's
    form; noise, a dark ground and light falling unevenly included."""
    contrast, options = DIM_CASES[case]
    rng = np.random.default_rng(1)
    pixels, _ = glyph_set(10, seed=3)
    differences = [np.abs(images.to_mnist(dim(digit, 255.0, paper=255.0)).astype(int)
                          - images.to_mnist(dim(digit, contrast, rng=rng, **options)).astype(int)).mean()
                   for digit in pixels]
    # Of 255, the typical digit: a few come out a pixel wider or narrower (their box's edge falls on a
    # level the dim version rounds the other way), which moves many pixels a little.
    assert np.median(differences) < (8 if options.get("noise") or contrast < 20 else 4), (case, differences)


def test_a_flat_image_is_refused_with_the_contrast_it_has():
    rng = np.random.default_rng(2)
    for flat in (np.full((84, 84), 79.0) + rng.normal(0, 3, (84, 84)), np.full((84, 84), 79.0),
                 np.rint(np.full((84, 84), 120.0) + 40 * np.linspace(-0.5, 0.5, 84)[None, :])):  # just uneven light
        with pytest.raises(ValueError, match=r"no digit found: the image is flat \(its strongest stroke stands \d+ "
                                             r"levels of 255 off the paper, against grain of [\d.]+"):
            images.to_mnist(flat)


# --- the model sees photos as it sees clean digits ----------------------------------------------


def test_dim_photos_are_predicted_as_their_bright_scans(trained):
    from mnistres.inference.predict import probabilities
    from mnistres.inference.trained import load_trained

    model = load_trained(trained, device="cpu")
    pixels, _ = glyph_set(20, seed=4)
    rng = np.random.default_rng(6)

    def answers(arrays: list[np.ndarray]) -> list[int]:
        return [int(np.argmax(p)) for p in probabilities(model, [images.to_mnist(a) for a in arrays])]

    bright = answers([dim(digit, 255.0, paper=255.0) for digit in pixels])
    for case, (contrast, options) in DIM_CASES.items():
        seen = answers([dim(digit, contrast, rng=rng, **options) for digit in pixels])
        agree = sum(a == b for a, b in zip(seen, bright))
        # A small model of font digits (about 90 % on its own test set) is easily swayed: one of 20 more than
        # the issue asks of a real model (test_real_data.py: at least 19 of 20 real digits at 20 levels).
        assert agree >= (18 if contrast >= 20 else 15), (case, agree)


def test_photo_like_images_are_classified_as_the_clean_digit(trained, tmp_path):
    from mnistres.inference.predict import predict

    rng = np.random.default_rng(5)
    clean_files, photo_files = [], []
    for digit in range(CLASSES):
        drawing = ink(digit, size=64, angle=float(rng.uniform(-8, 8)), stroke=1)
        clean = images.to_mnist(drawing)
        np.save(tmp_path / f"clean-{digit}.npy", clean)
        clean_files.append(tmp_path / f"clean-{digit}.npy")
        thick = ink(digit, size=64, stroke=3)  # a marker, not a pen: three times the stroke
        versions = {
            "inverted.png": 255 - drawing,  # dark ink on white, same frame
            "canvas.png": photo(drawing, rng),  # large light canvas, off-centre, uneven paper
            "canvas.jpg": photo(drawing, rng),  # ... and JPEG noise
            "thick.jpg": photo(thick, rng),  # thick strokes on paper, JPEG
        }
        for suffix, array in versions.items():
            path = tmp_path / f"{digit}-{suffix}"
            save(array, path, **({"quality": 40} if suffix.endswith(".jpg") else {}))
            photo_files.append(path)
    clean = predict(trained, clean_files, preprocess=False, device="cpu")["predictions"]
    clean_digit = {row["file"].split("clean-")[1][0]: row["predicted"] for row in clean}
    assert sum(clean_digit[str(d)] == d for d in range(CLASSES)) >= 9  # the clean drawings are recognised
    for row in predict(trained, photo_files, device="cpu")["predictions"]:
        name = row["file"].rsplit("/", 1)[-1]
        assert row["predicted"] == clean_digit[name[0]], (name, row)


# --- reading files, and per-file errors ---------------------------------------------------------


def test_arrays_in_npy_and_npz(tmp_path):
    stack, _ = glyph_set(3, 7)
    np.save(tmp_path / "stack.npy", stack)
    np.save(tmp_path / "one.npy", stack[0].astype(np.float32) / 255.0)  # floats in [0, 1]
    np.savez(tmp_path / "pair.npz", first=stack[0], rest=stack[1:])
    assert [s.name.rsplit("/", 1)[-1] for s in images.read(tmp_path / "stack.npy")] == \
        ["stack.npy[0]", "stack.npy[1]", "stack.npy[2]"]
    assert np.array_equal(images.read(tmp_path / "one.npy", preprocess=False)[0].pixels, stack[0])
    names = [s.name.rsplit("/", 1)[-1] for s in images.read(tmp_path / "pair.npz")]
    assert names == ["pair.npz:first", "pair.npz:rest[0]", "pair.npz:rest[1]"]


def test_unusable_files_get_a_reason_each(tmp_path):
    (tmp_path / "noise.png").write_bytes(b"\x89PNG not really" * 10)
    good = tmp_path / "good.jpg"
    save(photo(ink(3), np.random.default_rng(1)), good, quality=60)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:400])  # truncated
    save(np.full((40, 40), 240.0), tmp_path / "blank.png")
    (tmp_path / "notes.txt").write_text("7")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2, 2)))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    reasons = {path: images.read(tmp_path / path)[0].error for path in
               ("noise.png", "cut.jpg", "blank.png", "notes.txt", "cube.npy", "objects.npy")}
    assert "cannot read it" in reasons["noise.png"] and "cannot read it" in reasons["cut.jpg"]
    assert "no digit found" in reasons["blank.png"]
    assert "not a format mnistres reads" in reasons["notes.txt"]
    assert "expected (H, W) or (N, H, W)" in reasons["cube.npy"]
    assert "cannot read it" in reasons["objects.npy"]  # never unpickled
    assert images.read(good)[0].pixels is not None
    assert "must be 28x28" in images.read(good, preprocess=False)[0].error


def test_predict_command_reports_bad_files_and_predicts_the_rest(trained, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    save(photo(ink(2, size=64), np.random.default_rng(3)), folder / "two.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    result = invoke("predict", str(trained), str(folder), "--device", "cpu")
    assert result.exit_code == 1, result.output
    assert "two.png" in result.output and "broken.jpg" in result.output and "cannot read it" in result.output
    as_json = invoke("predict", str(trained), str(folder / "two.png"), "--json", "--top", "2")
    assert as_json.exit_code == 0
    rows = json.loads(as_json.stdout)["predictions"]
    assert len(rows) == 1 and len(rows[0]["top"]) == 2 and rows[0]["top"][0]["class"] == rows[0]["predicted"]
    assert 0 < rows[0]["confidence"] <= 1 and rows[0]["top"][0]["probability"] >= rows[0]["top"][1]["probability"]

    explained = invoke("predict", str(trained), str(folder / "two.png"), "--explain", "--top", "2")
    assert explained.exit_code == 0, explained.output
    lines = [line for line in explained.output.splitlines() if line.startswith("│")]
    for line, chance in zip(lines, rows[0]["top"]):  # one line per likely digit, its bar as long as its chance
        cell = line.split("│")[4]
        assert cell.strip().startswith(str(chance["class"])) and f"{chance['probability']:.3f}" in cell
        eighths = sum(8 if c == "█" else " ▏▎▍▌▋▊▉".index(c) for c in cell if c in "█▏▎▍▌▋▊▉")
        assert eighths == round(chance["probability"] * 20 * 8)


@pytest.mark.parametrize("args, fragment", [
    (["missing.png"], "missing.png does not exist"),
    (["empty-folder"], "holds no images"),
])
def test_predict_mistakes_are_one_line(trained, tmp_path, args, fragment):
    (tmp_path / "empty-folder").mkdir()
    result = invoke("predict", str(trained), *args)
    assert result.exit_code == 2 and fragment in result.output
    assert len(result.output.strip().splitlines()) == 1


# --- eval --images -------------------------------------------------------------------------------


def test_eval_images_prints_per_class_results(trained, tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "handwriting"
    for digit in range(CLASSES):
        (folder / str(digit)).mkdir(parents=True)
        for number in range(2):
            drawing = ink(digit, size=int(rng.integers(50, 80)), angle=float(rng.uniform(-8, 8)), stroke=number * 3)
            save(photo(drawing, rng), folder / str(digit) / f"{number}.jpg", quality=50)
    (folder / "3" / "scribble.txt").write_text("?")
    (folder / "3" / ".DS_Store").write_bytes(b"\x00")  # hidden files are not images, nor reported
    result = invoke("eval", str(trained), "--images", str(folder), "--per-class", "--confusion", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "(20 usable images): accuracy" in result.output and "skipped" in result.output and "scribble.txt" in result.output
    assert "precision" in result.output  # the per-class table
    data = json.loads(invoke("eval", str(trained), "--images", str(folder), "--json").stdout)
    assert data["images"] == 20 and len(data["per_class"]) == CLASSES and len(data["skipped"]) == 1
    assert sum(map(sum, data["confusion_matrix"])) == 20 and data["accuracy"] >= 0.8

    # --mistakes names each wrongly read image by its file, the folder saying its true class.
    (folder / "7" / "0.jpg").rename(folder / "1" / "seven-filed-as-one.jpg")  # a label the model must get wrong
    listed = json.loads(invoke("eval", str(trained), "--images", str(folder), "--mistakes", "20", "-o", "m.png",
                               "--json").stdout)["mistakes"]
    assert Path("m.png").read_bytes().startswith(b"\x89PNG")
    assert listed["total"] >= 1 and all(Path(row["file"]).parent.name == str(row["label"]) for row in listed["shown"])
    assert any(row["file"].endswith("seven-filed-as-one.jpg") and row["label"] == 1 for row in listed["shown"])


@pytest.mark.parametrize("layout, fragment", [
    ({"seven": ["a.png"]}, "subfolders must be named 0 to 9"),
    ({}, "no class subfolders"),
    ({"1": ["notes.txt"]}, "no usable image"),
])
def test_eval_images_mistakes_are_one_line(trained, tmp_path, layout, fragment):
    folder = tmp_path / "set"
    folder.mkdir()
    for name, files in layout.items():
        (folder / name).mkdir()
        for file in files:
            (folder / name / file).write_text("x")
    result = invoke("eval", str(trained), "--images", str(folder))
    assert result.exit_code == 2 and fragment in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert invoke("eval", str(trained), "--no-preprocess").exit_code == 2


# --- files that would exhaust the machine, and files read in their real range ------------------


def npz_claiming(path, shape) -> None:
    """An .npz whose header claims `shape` (uint8) but holds almost nothing: a few KB on disk."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": shape})
            member.write(bytes(1 << 20))


def test_array_files_claiming_gigapixels_are_refused_from_their_header(tmp_path):
    npz_claiming(tmp_path / "bomb.npz", (100_000, 280, 280))  # 7.8 GB once decompressed
    np.save(tmp_path / "wide.npy", np.zeros((8, 9000, 1000), np.uint8))  # 72 M values
    for name in ("bomb.npz", "wide.npy"):
        (sample,) = images.read(tmp_path / name)
        assert sample.pixels is None and "are not read" in sample.error, sample.error


def test_a_huge_picture_is_refused_before_decoding(tmp_path):
    Image.new("L", (7500, 7000), 255).save(tmp_path / "poster.png")  # 52.5 megapixels, 200 KB of PNG
    (sample,) = images.read(tmp_path / "poster.png")
    assert sample.pixels is None and "7500x7000 pixels" in sample.error


def test_a_large_photo_is_shrunk_as_it_is_read_and_still_classified(trained, tmp_path):
    drawing = ink(4, size=300)  # a 900x900 drawing: its strokes are thick at this size
    page = photo(drawing, np.random.default_rng(5), canvas=(2400, 3200))
    save(page, tmp_path / "big.jpg", quality=90)
    save(images.to_mnist(drawing), tmp_path / "clean.png")
    rows = json.loads(invoke("predict", str(trained), str(tmp_path / "big.jpg"), str(tmp_path / "clean.png"),
                             "--json").stdout)["predictions"]
    assert rows[0]["predicted"] == rows[1]["predicted"], rows


def test_sixteen_bit_pngs_are_read_in_their_own_range(tmp_path):
    deep = (ink(5, size=64) / 255.0 * 65535).astype(np.uint16)  # white ink on black, 16 bits per pixel
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    (sample,) = images.read(tmp_path / "deep.png")
    assert sample.pixels is not None, sample.error  # clipped to 8 bits it would be all white: "blank"
    assert np.array_equal(sample.pixels, images.to_mnist(ink(5, size=64)))


def test_an_empty_stack_and_an_empty_archive_get_a_row(tmp_path):
    np.save(tmp_path / "none.npy", np.zeros((0, 28, 28), np.uint8))
    np.savez(tmp_path / "nothing.npz")
    for name in ("none.npy", "nothing.npz"):
        (sample,) = images.read(tmp_path / name)
        assert sample.pixels is None and "no images" in sample.error


def test_any_failure_on_one_image_stays_that_images_row(trained, tmp_path, monkeypatch):
    stack, _ = glyph_set(2, 3)
    np.save(tmp_path / "pair.npy", stack)
    real = images.to_mnist
    calls = []

    def flaky(gray):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("cannot allocate 7 GB")
        return real(gray)

    monkeypatch.setattr(images, "to_mnist", flaky)
    result = invoke("predict", str(trained), str(tmp_path / "pair.npy"), "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)["predictions"]
    assert "MemoryError" not in rows[0]["error"] and "cannot allocate" in rows[0]["error"]
    assert rows[1]["predicted"] in range(10)


# --- user text is printed as it is, never read as Rich markup -----------------------------------


def test_paths_with_brackets_are_printed_as_they_are(trained, tmp_path):
    import shutil

    odd = tmp_path / "m[" / "i]" / "[bold]best.pt"  # the path /x/m[/i]/[bold]best.pt
    odd.parent.mkdir(parents=True)
    shutil.copyfile(trained, odd)
    save(images.to_mnist(ink(1)), tmp_path / "[red]one.png")
    result = invoke("predict", str(odd), str(tmp_path / "[red]one.png"))
    assert result.exit_code == 0, result.output
    flat = result.output.replace("\n", "").replace("│", "").replace(" ", "")
    assert "m[/i]/[bold]best.pt" in flat and "[red]one.png" in flat


def test_predict_says_what_a_folder_holds_that_it_does_not_read_and_refuses_a_device(fast, tmp_path):
    """In folder mode .gif/.tiff/.webp files, subfolders and devices were left out without a word; a link to
    /dev/zero named x.png was "does not exist"."""
    import json
    import os
    import sys

    from typer.testing import CliRunner

    from mnistres.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["train", *fast, "--epochs", "1", "--name", "p"]).exit_code == 0
    folder = tmp_path / "scans"
    folder.mkdir()
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255
    np.save(folder / "one.npy", digit)
    (folder / "two.gif").write_bytes(b"GIF89a")
    (folder / "inner").mkdir()
    (folder / ".hidden").write_text("")
    result = runner.invoke(app, ["predict", "runs/p/best.pt", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    skipped = {Path(entry["file"]).name: entry["error"] for entry in json.loads(result.stdout)["skipped"]}
    assert set(skipped) == {"two.gif", "inner"}
    assert skipped["two.gif"].startswith("not a format mnistres reads") and skipped["inner"].startswith("a folder")
    shown = runner.invoke(app, ["predict", "runs/p/best.pt", str(folder)])
    assert shown.exit_code == 0 and f"skipped {folder / 'two.gif'}: not a format" in shown.stderr
    if sys.platform != "win32" and os.path.exists("/dev/zero"):
        os.symlink("/dev/zero", tmp_path / "x.png")
        device = runner.invoke(app, ["predict", "runs/p/best.pt", str(tmp_path / "x.png")])
        assert device.exit_code == 2 and "is not a regular file" in device.stderr, device.output
