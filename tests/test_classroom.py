"""A class-mode server as a class uses it: two students and the teacher in three browsers.

The library's rules are tested in tests/test_access.py; here the pages show each person what
they may do, and the teacher's passcode unlocks the rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from pneumo.access import class_user
from pneumo.runs.store import RunState, RunStore
from pneumo.training.config import TrainConfig
from tests.appserver import BROWSER_MARKS, ROOT, launch_chromium, settle, streamlit_server, wait_until_drawn
from tests.conftest import cache_copy
from ui.common import WORD_JOINER

PASSCODE = "chalk-and-talk"
HOSTILE_NAME = "[click here](https://evil.example) ![t](http://evil.example/t.png) :red[alarm]"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: Path) -> Iterator[tuple[str, Path]]:
    """A server in class mode, configured as the README says: the passcode in the secrets file."""
    work = tmp_path_factory.mktemp("classroom")
    (work / "data").mkdir()
    secrets = work / "secrets.toml"
    secrets.write_text(f'PNEUMO_TEACHER_PASSCODE = "{PASSCODE}"\nPNEUMO_DATA_ROOTS = "{work / "data"}"\n')
    cache = cache_copy(synthetic_cache, work / "cache")
    env = {**os.environ, "PNEUMO_CACHE": str(cache), "PNEUMO_RUNS": str(work / "runs")}
    for key in ("PNEUMO_DATA", "PNEUMO_TEACHER_PASSCODE", "PNEUMO_DATA_ROOTS"):
        env.pop(key, None)
    with open(work / "server.log", "wb") as log, \
            streamlit_server(ROOT / "streamlit_app.py", env, log, args=["--secrets.files", str(secrets)]) as url:
        yield url, work / "runs"


@pytest.fixture(scope="module")
def browser(classroom: tuple[str, Path]):
    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


_OPEN = []  # the browser contexts the running test has opened


@pytest.fixture(autouse=True)
def _close_browsers() -> Iterator[None]:
    """Each test's browsers leave with it: sessions left open keep the server busy for the next test."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _arrive(browser, url: str, name: str, passcode: str = ""):
    """A new browser (its own session) that types its name, and the passcode if given."""
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    _OPEN.append(context)
    page = context.new_page()
    page.goto(url, timeout=120_000)  # a busy CI machine: a first draw can take longer than 30 s
    settle(page, "Images per split and class")
    expect(page.get_by_text("Type a name first")).to_be_visible()
    field = page.get_by_role("textbox", name="Your name")
    field.fill(name)
    field.press("Enter")
    expect(page.get_by_text("Type a name first")).to_have_count(0)
    # The rerun after the name leaves the old sidebar on screen until it ends: wait for one of each.
    wait_until_drawn(page, "Teacher")
    expect(page.get_by_text("Teacher", exact=True)).to_have_count(1)
    if passcode:
        page.get_by_text("Teacher", exact=True).click()
        page.get_by_role("textbox", name="Passcode").fill(passcode)
        page.get_by_role("textbox", name="Passcode").press("Enter")  # as a teacher would: Enter unlocks too
        expect(page.get_by_text("Teacher (unlocked)")).to_be_visible()
    return page


def _watch(page, run_label: str) -> None:
    page.get_by_role("link", name="Train").click()
    settle(page, "Start training")
    page.get_by_text("Watch", exact=True).click()
    page.get_by_role("combobox", name="Run", exact=True).click()
    page.get_by_role("option", name=run_label).click()
    settle(page, "Log (last lines)")


def _stop_button(page):
    """The run's Stop button, not the one Streamlit's header shows while a script or fragment reruns."""
    return page.locator('[data-testid="stMainBlockContainer"]').get_by_role("button", name="Stop", exact=True)


def test_students_change_only_their_own_runs_and_the_teacher_any(browser, classroom: tuple[str, Path]) -> None:
    url, runs_root = classroom
    store = RunStore(runs_root)
    anns = store.create(TrainConfig(name=HOSTILE_NAME, image_size=64, epochs=3), owner=class_user("Ann"))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", anns.id])  # its "worker"
    try:
        anns.update_status(state=RunState.RUNNING, pid=holder.pid, started=time.time(), device="CPU (held by the test)",
                           epochs_total=3, batches_per_epoch=10)
        label = f"{HOSTILE_NAME} (synthetic) · running"

        ben = _arrive(browser, url, "Ben")
        _watch(ben, label)
        expect(ben.get_by_text("Started by Ann: only they or the teacher can stop")).to_be_visible()
        assert _stop_button(ben).count() == 0
        # The name reads as typed (invisible word joiners aside): no link, no remote image, no colour.
        assert HOSTILE_NAME in ben.locator('[data-testid="stMainBlockContainer"]').inner_text().replace(WORD_JOINER, "")
        assert ben.locator('a[href*="evil.example"], img[src*="evil.example"]').count() == 0
        ben.get_by_text("Runs", exact=True).click()
        settle(ben, "Manage a run")
        expect(ben.get_by_text("only they or the teacher can rename or delete it")).to_be_visible()
        assert ben.get_by_role("button", name="Delete…").count() == 0
        assert ben.locator('a[href*="evil.example"], img[src*="evil.example"]').count() == 0

        ann = _arrive(browser, url, "Ann")
        _watch(ann, label)
        expect(_stop_button(ann)).to_be_visible()

        teacher = _arrive(browser, url, "Ms Lee", PASSCODE)
        _watch(teacher, label)
        _stop_button(teacher).click()
        expect(teacher.get_by_text("Stopping after the current batch")).to_be_visible()
        assert anns.file("stop").exists()  # the flag the trainer checks after every batch
        teacher.screenshot(path=str(ROOT / "artifacts" / "screenshots" / "classroom-teacher.png"), full_page=True)
    finally:
        holder.kill()
        holder.wait()


def test_a_wrong_passcode_unlocks_nothing(browser, classroom: tuple[str, Path]) -> None:
    url, _ = classroom
    page = _arrive(browser, url, "Cal")
    page.get_by_text("Teacher", exact=True).click()
    page.get_by_role("textbox", name="Passcode").fill("guess")
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_text("Wrong passcode.")).to_be_visible()
    assert page.get_by_text("Teacher (unlocked)").count() == 0


def test_a_folder_outside_the_data_roots_gets_one_answer(browser, classroom: tuple[str, Path]) -> None:
    url, _ = classroom
    page = _arrive(browser, url, "Dee")
    answers = []
    for path in ("/etc", "/no/such/folder"):
        page.get_by_text("Folder", exact=True).click()
        field = page.get_by_role("textbox", name="Folder path")
        field.fill(path)
        field.press("Enter")
        settle(page, "only reads files under")
        answers.append(page.locator('[data-testid="stAlert"]').first.inner_text())
    assert answers[0] == answers[1]


def test_a_deep_link_on_a_fresh_server_shows_the_navigation(browser) -> None:
    """Opened first at /predict (no page ever drawn in a new server process), the top bar is there;
    without a passcode the server is in solo mode."""
    env = {**os.environ}
    env.pop("PNEUMO_TEACHER_PASSCODE", None)
    with streamlit_server(ROOT / "streamlit_app.py", env) as fresh:
        page = browser.new_page()
        page.goto(f"{fresh}/predict", timeout=120_000)
        settle(page, "Predict")
        for name in ("Dataset", "Train", "Evaluate", "Predict"):
            expect(page.get_by_role("link", name=name)).to_be_visible()
        expect(page.get_by_text("Solo mode")).to_be_visible()
        assert page.get_by_text("Deploy", exact=True).count() == 0
        page.goto(f"{fresh}/dataset")  # named like the other pages, though the first page lives at /
        settle(page, "Images per split and class")
        assert page.get_by_text("Page not found").count() == 0
