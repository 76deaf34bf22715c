"""Do predictions survive the trip from MNIST onto paper? (The check behind `mnistres predict`.)

Takes real MNIST test digits, and "writes" each on a large sheet of light paper: enlarged 6 to
10 times, dark ink on a shaded, grainy page, anywhere on it, saved as PNG and as JPEG in
class subfolders. Then it predicts every sheet with `mnistres predict`'s code and compares the
answer with the prediction for the clean 28x28 digit, and runs `mnistres eval --images` on the
PNG folder.

    python benchmarks/own_images.py runs/<name>/best.pt --data-dir ../shared/data [--per-class 20]
                                    [--keep DIR] [--json result.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mnistres.train import data as data_module
from mnistres.inference.predict import predict

CANVAS = (700, 900)  # height, width of the sheet, in pixels


def on_paper(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 MNIST digit (white on black) as dark ink on a large light page."""
    scale = float(rng.uniform(6, 10))
    side = int(round(28 * scale))
    enlarged = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC), dtype=np.float64) / 255.0
    height, width = CANVAS
    ys, xs = np.mgrid[0:height, 0:width]
    paper = 200 + 35 * (xs / width) * (ys / height) + rng.normal(0, 5, size=(height, width))
    top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
    ink = np.zeros((height, width))
    ink[top:top + side, left:left + side] = np.clip(enlarged, 0, 1)
    return np.clip(paper * (1 - ink) + 30 * ink, 0, 255)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/raw/")
    parser.add_argument("--per-class", type=int, default=20, help="test digits per class")
    parser.add_argument("--keep", type=Path, help="write the sheets here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)

    images, labels = data_module.load_split("mnist", Path(args.data_dir), "test", download=False)
    picked = [int(i) for c in range(10) for i in np.flatnonzero(labels.numpy() == c)[:args.per_class]]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="mnistres-paper-") as scratch:
        root = args.keep or Path(scratch)
        clean_file = root / "clean.npy"
        root.mkdir(parents=True, exist_ok=True)
        np.save(clean_file, images[picked, 0].numpy())
        sheets = {"png": [], "jpg": []}
        for number, index in enumerate(picked):
            sheet = np.rint(on_paper(images[index, 0].numpy(), rng)).astype(np.uint8)
            label = int(labels[index])
            for kind, options in (("png", {}), ("jpg", {"quality": 70})):
                path = root / kind / str(label) / f"{number:04d}.{kind}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(sheet).save(path, **options)
                sheets[kind].append(path)

        clean = predict(args.checkpoint, [clean_file], preprocess=False, device="cpu")["predictions"]
        truth = [int(labels[i]) for i in picked]
        result = {"checkpoint": str(args.checkpoint), "digits": len(picked), "canvas": list(CANVAS),
                  "clean_accuracy": float(np.mean([row["predicted"] == t for row, t in zip(clean, truth)]))}
        for kind, paths in sheets.items():
            rows = predict(args.checkpoint, paths, device="cpu")["predictions"]
            same = [row.get("predicted") == c["predicted"] for row, c in zip(rows, clean)]
            right = [row.get("predicted") == t for row, t in zip(rows, truth)]
            result[kind] = {"same_as_clean": float(np.mean(same)), "accuracy": float(np.mean(right)),
                            "errors": [row for row in rows if "error" in row]}
            print(f"{kind.upper()} sheets: same prediction as the clean digit for {sum(same)}/{len(same)}; "
                  f"accuracy {np.mean(right):.1%} (clean digits: {result['clean_accuracy']:.1%})", flush=True)
        shown = subprocess.run([sys.executable, "-m", "mnistres", "eval", str(args.checkpoint), "--images",
                                str(root / "png"), "--per-class", "--device", "cpu"],
                               capture_output=True, text=True, check=True)
        print(shown.stdout, flush=True)
        result["eval_images_output"] = shown.stdout
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
