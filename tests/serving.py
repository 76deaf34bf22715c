"""Helpers for the `serve` tests: a folder of tiny runs, a server on a free port in a thread, requests, and
mouse strokes on the page (benchmarks/serve_screenshots.py draws with them too)."""

from __future__ import annotations

import http.client
import io
import json
import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import numpy as np
from typer.testing import CliRunner

from mnistres.cli import app

TINY = ["--device", "cpu", "--no-download", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--set", "width=8",
        "--set", "blocks=1", "--set", "precise_bn=128", "--threads", "1"]


def make_runs(root: Path, data_dir: Path) -> Path:
    """runs/ with one run (`one`) and a sweep (`lr`, two points), trained on the synthetic data."""
    runner = CliRunner()
    options = ["--data-dir", str(data_dir), *TINY, "--out-dir", str(root / "runs")]
    result = runner.invoke(app, ["train", *options, "--name", "one"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sweep", "lr", "0.1", "0.01", *options, "--name", "lr", "--no-report"])
    assert result.exit_code == 0, result.output
    return root / "runs"


@contextmanager
def running(runs: Optional[Path], checkpoint: Optional[Path] = None, **options: Any) -> Iterator[Any]:
    """A server on a free port of 127.0.0.1, answering from a thread while the block runs."""
    from mnistres.serve import server

    serving = server.start(runs, checkpoint, port=0, device="cpu", threads=1, **options)
    thread = threading.Thread(target=serving.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield serving
    finally:
        serving.server.shutdown()
        thread.join(10)
        serving.close()


def request(url: str, path: str, body: Optional[bytes] = None, headers: Optional[dict[str, str]] = None,
            method: Optional[str] = None) -> tuple[int, dict[str, str], bytes]:
    """One request; the status, headers and body (whatever the status)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method or ("POST" if body is not None else "GET"), path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def get_json(url: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    status, headers, body = request(url, path, **kwargs)
    assert headers["content-type"] == "application/json", (path, headers)
    return status, json.loads(body)


def png_of(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def first_test_digits(data_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images and labels of a data folder's MNIST test file."""
    import gzip

    raw = Path(data_dir) / "MNIST" / "raw"
    images = np.frombuffer(gzip.open(raw / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.open(raw / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return images[:count], labels[:count]


# --- the page -----------------------------------------------------------------------------------------


def until(page, condition: str, timeout: float = 30) -> None:
    """Wait until the JavaScript expression `condition` holds on the page. (Playwright's wait_for_function
    evaluates its text with eval, which the page's Content-Security-Policy forbids, as it should.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        time.sleep(0.05)


def draw(page, strokes) -> None:
    """Mouse strokes on the drawing pad: each a list of (x, y) in the pad's pixels."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()


def arc(x: float, y: float, radius: float, start: float, end: float, steps: int = 24) -> list[tuple[float, float]]:
    angles = [math.radians(start + (end - start) * k / steps) for k in range(steps + 1)]
    return [(x + radius * math.cos(a), y + radius * math.sin(a)) for a in angles]


THREE = [arc(135, 95, 45, -160, 90), arc(135, 185, 45, -90, 160)]  # two bows, one above the other
ONE = [[(140, 40 + 10 * k) for k in range(21)]]
