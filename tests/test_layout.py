"""Every page as a classroom projector (1024x768) and a full-HD screen (1920x1080) show it.

A really trained run (Watch curves, Predict) and runs with stored predictions (Evaluate, Board)
are on the server; each page is opened at both sizes, screenshotted into
``artifacts/screenshots/projector-*.png`` for a person to look at, and every chart's drawn width
is checked: none squeezed below a readable width, none running off the screen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from pneumo.evaluation.board import OFFICIAL_TEST
from tests.appserver import BROWSER_MARKS, ROOT, launch_chromium, settle, streamlit_server
from tests.conftest import cache_copy, finished_run

pytestmark = BROWSER_MARKS
SHOTS = ROOT / "artifacts" / "screenshots"
SIZES = ((1024, 768), (1920, 1080))
READABLE_PX = 380  # a chart narrower than this has crowded ticks and unreadable labels on a projector
# (page link, Train view, text on screen once drawn, whether it draws charts)
PAGES = (("Dataset", None, "Images per split and class", False), ("Train", "New run", "Start training", False),
         ("Train", "Watch", "Loss per epoch", True), ("Train", "Runs", "Compare runs", True),
         ("Evaluate", None, "Errors", True), ("Board", None, "Repeat a run", True),
         ("Predict", None, "Download overlay (PNG)", False))


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: Path) -> Iterator[str]:
    work = tmp_path_factory.mktemp("layout")
    cache = cache_copy(synthetic_cache, work / "cache")
    env = {**os.environ, "PNEUMO_CACHE": str(cache), "PNEUMO_RUNS": str(work / "runs")}
    env.pop("PNEUMO_DATA", None)
    subprocess.run([sys.executable, "-m", "pneumo", "train", "--dataset", "synthetic", "--image-size", "64",
                    "--epochs", "2", "--cnn-blocks", "3", "--name", "trained CNN"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    with pytest.MonkeyPatch.context() as patch:  # runs with predictions only, for Evaluate and the Board
        patch.setenv("PNEUMO_RUNS", env["PNEUMO_RUNS"])
        for seed in range(3):
            finished_run(f"ResNet50 · seed {seed}", dataset="/data/chest_xray", seed=seed, test=OFFICIAL_TEST,
                         model="resnet50", image_size=224)
        finished_run("CNN on RSNA", dataset="/data/rsna", test=(1200, 300))
    with open(work / "server.log", "wb") as log, streamlit_server(ROOT / "streamlit_app.py", env, log) as url:
        yield url


def _open(page, link: str, view: str | None, text: str) -> None:
    page.get_by_role("link", name=link).click()
    if view:
        settle(page, "New run")
        page.get_by_text(view, exact=True).click()
    if view == "Watch":  # the trained run, not the newest (which has no curves)
        settle(page, "Run")
        page.get_by_role("combobox", name="Run", exact=True).click()
        page.get_by_role("option", name="trained CNN", exact=False).first.click()
    settle(page, text)


@pytest.mark.parametrize("width,height", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_page_reads_on_a_projector_and_a_full_hd_screen(app_url: str, width: int, height: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(app_url)
        settle(page, "Images per split and class")
        page.get_by_role("combobox", name="Working image size (px)").click()
        page.get_by_role("option", name="64").click()  # the trained run's size: Predict shows its films
        settle(page, "Images per split and class")
        drawn = {}
        for link, view, text, charts in PAGES:
            _open(page, link, view, text)
            if charts:  # Plotly draws in the browser after the script has ended: a busy machine lags
                page.locator(".js-plotly-plot").first.wait_for()
            name = (view or link).lower().replace(" ", "-")
            page.screenshot(path=str(SHOTS / f"projector-{name}-{width}.png"))
            drawn[name] = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
                .filter(e => e.offsetParent !== null)  // charts in closed expanders are not drawn
                .map(e => { const r = e.getBoundingClientRect();
                            return {title: e.querySelector('.gtitle')?.textContent ?? '', left: r.left,
                                    width: r.width}; })""")
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways"
        browser.close()
    for name, charts in drawn.items():
        for chart in charts:
            assert chart["width"] >= READABLE_PX, f"{name}: '{chart['title']}' is {chart['width']:.0f} px wide"
            assert chart["left"] + chart["width"] <= width, f"{name}: '{chart['title']}' runs off the screen"
