"""Bench: how long a teacher waits for each page of a freshly started app, in a real browser.

    python bench/app_start.py [REPEATS] [READ_SECONDS]

Each repeat starts a new ``streamlit run`` server (as after a reboot) and opens the app in
headless Chromium: seconds from the request to the Dataset page's charts, then, after
READ_SECONDS spent on that page (default 0: a click at once), to each other page after a click,
until the script has finished. The synthetic set is decoded into the cache
beforehand (its one-off first scan is timed separately), so the figures are page costs, not
drawing. Baseline, same run: a one-line Streamlit app on a fresh server, which is what
Streamlit and the browser cost before any of pneumo's work. Medians of REPEATS (default 3).
Needs Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import Page, sync_playwright

from pneumo.data import cache
from pneumo.data.sources import parse_spec
from pneumo.training.config import TrainConfig
from tests.appserver import ROOT, streamlit_server, wait_until_drawn

PAGES = {"Train": "Start training", "Evaluate": "No run has predictions yet", "Predict": "No run has a saved model yet"}


def settled(page: Page, text: str) -> float:
    """Seconds until ``text`` shows and the script has stopped running."""
    start = time.perf_counter()
    wait_until_drawn(page, text, timeout_ms=300_000)
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    read_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    work = Path(tempfile.mkdtemp(prefix="pneumo-app-start-"))
    env = {**os.environ, "PNEUMO_CACHE": str(work / "cache"), "PNEUMO_RUNS": str(work / "runs")}
    env.pop("PNEUMO_DATA", None)
    os.environ.update(PNEUMO_CACHE=env["PNEUMO_CACHE"])
    start = time.perf_counter()
    cache.load(parse_spec("synthetic"), TrainConfig().image_size)
    first_scan = time.perf_counter() - start
    hello = work / "hello.py"
    hello.write_text('import streamlit as st\n\nst.title("hello")\n')

    figures: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for _ in range(repeats):
            with streamlit_server(hello, env) as url:
                page = browser.new_page()
                start = time.perf_counter()
                page.goto(url)
                figures.setdefault("baseline: one-line app", []).append(time.perf_counter() - start
                                                                         + settled(page, "hello"))
                page.close()
            with streamlit_server(ROOT / "streamlit_app.py", env) as url:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                start = time.perf_counter()
                page.goto(url)
                settled(page, "Images per split and class")
                page.locator('[data-testid="stMarkdown"] td').first.wait_for()  # the table drawn
                figures.setdefault("Dataset (first page)", []).append(time.perf_counter() - start)
                page.wait_for_timeout(read_s * 1000)  # the teacher reads the first page
                for name, text in PAGES.items():
                    start = time.perf_counter()
                    page.get_by_role("link", name=name).click()
                    figures.setdefault(f"then {name}", []).append(time.perf_counter() - start + settled(page, text))
                page.close()
        browser.close()

    base = statistics.median(figures["baseline: one-line app"])
    print(f"synthetic set drawn and cached once at {TrainConfig().image_size} px: {first_scan:.1f} s")
    print(f"{'fresh server, page':<28}{'median s':>10}{'ratio':>8}   (median of {repeats}; "
          f"{read_s:g} s on the first page before the clicks)")
    for name, values in figures.items():
        print(f"{name:<28}{statistics.median(values):>10.2f}{statistics.median(values) / base:>8.1f}")


if __name__ == "__main__":
    main()
