"""The screenshots of docs/guides/serve.md: `mnistres serve`'s page, in the system's Chromium.

    mnistres train --preset fast --name fast
    mnistres sweep lr 0.1 0.01 --preset fast --epochs 3 --name fast-lr
    mnistres serve runs --checkpoint runs/fast/best.pt &
    python benchmarks/serve_screenshots.py http://127.0.0.1:8000/ docs/guides/serve

Draws a 3 with the mouse (two bows, as a person would), then opens the runs, a run of the sweep and the
sweep's report. Prints the digit the page showed for the 3.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import THREE, draw, until  # noqa: E402 - the browser tests' own strokes and waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--run", default="fast-lr/lr=0.1,seed=0", help="the run whose page is shown")
    parser.add_argument("--sweep", default="fast-lr", help="the sweep whose report is shown")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.folder.mkdir(parents=True, exist_ok=True)
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 520})
        page.goto(args.url)
        page.wait_for_selector("#checkpoint option", state="attached")
        draw(page, THREE)
        until(page, "document.body.dataset.asking === 'no' && document.getElementById('digit').dataset.digit !== ''")
        print("the drawn 3 shows as", page.inner_text("#digit"), page.inner_text("#confidence"))
        page.screenshot(path=args.folder / "draw.png")

        page.set_viewport_size({"width": 1100, "height": 420})
        page.goto(args.url + "#/runs")
        page.wait_for_selector("#runs-table tbody tr")
        page.screenshot(path=args.folder / "runs.png")

        page.set_viewport_size({"width": 1100, "height": 1400})
        page.goto(args.url + f"#/run/{quote(args.run, safe='')}")
        page.wait_for_selector("#chart-acc svg")
        until(page, "document.getElementById('mistakes-note').textContent !== ''")
        page.screenshot(path=args.folder / "run.png")

        page.set_viewport_size({"width": 1100, "height": 900})
        page.goto(args.url + f"#/report/{args.sweep}")
        page.wait_for_selector("#report h1", timeout=120_000)
        until(page, "Array.from(document.querySelectorAll('#report img')).every(i => i.complete)")
        page.locator("#report img").first.scroll_into_view_if_needed()
        page.screenshot(path=args.folder / "report.png")
        browser.close()


if __name__ == "__main__":
    main()
