"""The app as a user starts it (``streamlit run`` on a free port), and waiting for a page to be
drawn: shared by the browser tests and bench/app_start.py, so both measure the same thing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import ROOT


@contextmanager
def streamlit_server(script: Path, env: dict[str, str], log: IO[bytes] | int = subprocess.DEVNULL,
                     args: Sequence[str] = ()) -> Iterator[str]:
    """A fresh server for ``script``, its URL once it answers; ``log`` takes its output (a file,
    not a pipe nobody reads: that would fill and block the server); ``args``: more command-line
    flags for ``streamlit run`` (e.g. ``--secrets.files``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", *args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"streamlit did not start for {script}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_drawn(page, text: str, timeout_ms: int = 120_000) -> None:
    """Until ``text`` is on screen and the script has stopped running (no status widget)."""
    page.get_by_text(text).first.wait_for(timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


CHROMIUM = "/usr/bin/chromium"
# Every browser test file's marks: slow, and skipped where the system Chromium is missing.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt install chromium)"),
]


def settle(page, text: str) -> None:
    """Wait for ``text`` on screen and for the script to finish running; no exception shown."""
    wait_until_drawn(page, text)
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]


def launch_chromium(playwright):
    """Headless Debian Chromium as every browser test and bench drives it. Assertions wait up to a
    minute (Playwright's default is 5 s): on a busy 2-core CI machine a rerun can take that long."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])
