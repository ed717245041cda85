"""Login mode against a real OpenID Connect provider: ``st.login`` is Streamlit's own redirect and
cookie dance, so only a real provider (panva's oidc-provider on localhost, tests/oidc/) and a real
browser show that a student and a teacher get in, are told apart, and can get out again.

Needs node and ``npm ci --prefix tests/oidc`` (.ci/run does both); skipped without them.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright

from tests.appserver import BROWSER_MARKS, ROOT, launch_chromium, streamlit_server, wait_until_drawn
from tests.conftest import cache_copy
from ui.common import WORD_JOINER

OIDC = ROOT / "tests" / "oidc"
NODE = shutil.which("node")
CLIENT_ID = "pneumo-test"
TEACHER = "teacher@school.example"
PROMPT = "This server asks you to log in"
TIMEOUT_MS = 120_000  # for every wait: redirects and first draws are slow on a busy CI machine

pytestmark = [
    *BROWSER_MARKS,
    pytest.mark.skipif(NODE is None, reason="node is not installed (apt install nodejs): it runs the OIDC provider"),
    pytest.mark.skipif(not (OIDC / "node_modules" / "oidc-provider").is_dir(),
                       reason="the test OIDC provider is not installed: npm ci --prefix tests/oidc"),
]


def _shown(email: str) -> str:
    """A pattern for an address as the page shows it: typed text goes through ui.common.plain, which
    puts an invisible word joiner after the "@" so that markdown does not make it a mailto link."""
    return re.escape(email).replace("@", f"@{WORD_JOINER}?")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_provider(port: int, client_secret: str, redirect_uri: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """The provider, once it says it listens (its stdout line); its warnings go to ``log``."""
    assert NODE is not None
    process = subprocess.Popen(  # the secret by environment: a random one may start with "-"
        [NODE, str(OIDC / "provider.mjs"), f"--port={port}", f"--issuer=http://localhost:{port}",
         f"--client-id={CLIENT_ID}", f"--redirect-uri={redirect_uri}"],
        env={**os.environ, "OIDC_CLIENT_SECRET": client_secret}, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    said, deadline = b"", time.monotonic() + 60
    while (left := deadline - time.monotonic()) > 0 and select.select([process.stdout], [], [], left)[0]:
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:  # it exited: its reason is in the log
            break
        said += chunk
        if b"listening" in said:
            return process
    process.kill()
    process.wait()
    raise RuntimeError(f"the OIDC provider did not start (exit code {process.returncode}); see {log.name}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: Path) -> Iterator[str]:
    """The real app in login mode, its secrets in a file of their own (``--secrets.files``, so the
    repository's .streamlit is untouched), and a provider that knows it: the app's URL on localhost,
    the host the redirect URI names (the login cookies are set for it)."""
    work = tmp_path_factory.mktemp("login")
    oidc_port, client_secret = _free_port(), secrets.token_urlsafe(24)
    secrets_file = work / "secrets.toml"
    # {port}: Streamlit fills in its own port, which streamlit_server picks.
    secrets_file.write_text(
        f'PNEUMO_TEACHER_EMAILS = "{TEACHER}"\n\n'
        "[auth]\n"
        'redirect_uri = "http://localhost:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{client_secret}"\n'
        f'server_metadata_url = "http://localhost:{oidc_port}/.well-known/openid-configuration"\n')
    cache = cache_copy(synthetic_cache, work / "cache")
    env = {**os.environ, "PNEUMO_CACHE": str(cache), "PNEUMO_RUNS": str(work / "runs")}
    for key in ("PNEUMO_DATA", "PNEUMO_TEACHER_EMAILS", "PNEUMO_TEACHER_PASSCODE"):
        env.pop(key, None)  # the teachers come from the secrets file, as on a server
    with (open(work / "server.log", "wb") as log, open(work / "oidc.log", "wb") as oidc_log,
          streamlit_server(ROOT / "streamlit_app.py", env, log, args=["--secrets.files", str(secrets_file)]) as url):
        app = f"http://localhost:{urlsplit(url).port}"
        provider = _start_provider(oidc_port, client_secret, f"{app}/oauth2callback", oidc_log)
        try:
            yield app
        finally:
            provider.terminate()
            provider.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


def _offline(route: Route) -> None:
    """Only localhost: the provider's pages @import web fonts, which CI may not reach (or hang on)."""
    if urlsplit(route.request.url).hostname in ("localhost", "127.0.0.1"):
        route.continue_()
    else:
        route.abort()


def _new_page(browser: Browser) -> Page:
    """A page in a context of its own: its own cookies, so its own login."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", _offline)
    return context.new_page()


def _sidebar(page: Page) -> Locator:
    return page.locator('[data-testid="stSidebar"]')


def _expect_prompt(page: Page) -> None:
    """The log-in prompt and nothing of the app: no sidebar identity, no data set picker."""
    wait_until_drawn(page, PROMPT)
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=TIMEOUT_MS)
    assert page.get_by_text("Signed in as").count() == 0
    assert page.get_by_text("Data set", exact=True).count() == 0


def _log_in(page: Page, app_url: str, login: str) -> None:
    """From the app's prompt through the provider's login form (and consent, when asked) back to the app."""
    page.goto(app_url)
    _expect_prompt(page)
    page.get_by_role("button", name="Log in").click()
    page.locator("input[name=login]").fill(login)  # the provider's dev form: any login, any password
    page.locator("input[name=password]").fill("any")
    page.get_by_role("button", name="Sign-in").click()
    consent, signed_in = page.get_by_role("button", name="Continue"), _sidebar(page).get_by_text("Signed in as")
    expect(consent.or_(signed_in)).to_be_visible(timeout=TIMEOUT_MS)
    if consent.is_visible():
        consent.click()
    # The identity box is drawn before the page; the page itself (test_browser's business) may
    # still be drawing: no need to wait for it.
    expect(signed_in).to_be_visible(timeout=TIMEOUT_MS)


def test_login_tells_students_from_teachers_and_logs_out(browser: Browser, app_url: str) -> None:
    student, teacher = _new_page(browser), _new_page(browser)

    _log_in(student, app_url, "alice")
    identity = _sidebar(student).get_by_text("Signed in as")
    expect(identity).to_have_text(re.compile(rf"^Signed in as {_shown('alice@school.example')}$"), timeout=TIMEOUT_MS)
    # Past the identity box, the app itself: the sidebar's data set picker.
    expect(_sidebar(student).get_by_text("Data set", exact=True)).to_be_visible(timeout=TIMEOUT_MS)

    _log_in(teacher, app_url, "teacher")
    expect(_sidebar(teacher).get_by_text("Signed in as")).to_have_text(
        re.compile(rf"^Signed in as {_shown(TEACHER)} · teacher$"), timeout=TIMEOUT_MS)

    # Log out: Streamlit's /auth/logout clears the login cookie and sends the browser on to the
    # provider's end-session page (RP-initiated logout). Whether the browser gets there depends on
    # what the page is doing at that moment (a rerun in flight can abort the navigation), so the
    # test checks the server's answer, then opens the app afresh: the cookie must be gone.
    with student.expect_response(lambda r: urlsplit(r.url).path == "/auth/logout") as logout:
        _sidebar(student).get_by_role("button", name="Log out").click()
    assert logout.value.status == 302
    end_session = urlsplit(logout.value.headers["location"])
    assert end_session.path == "/session/end"
    assert parse_qs(end_session.query)["post_logout_redirect_uri"] == [f"{app_url}/oauth2callback"]
    student.goto(app_url)
    _expect_prompt(student)
    student.reload()  # the login cookie is gone, not just this page's state
    _expect_prompt(student)

    teacher.reload()  # the other browser stays logged in
    expect(_sidebar(teacher).get_by_text("Signed in as")).to_contain_text(re.compile(_shown(TEACHER)),
                                                                          timeout=TIMEOUT_MS)
