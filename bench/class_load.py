"""Bench: a classroom on one server. Does the app stay correct and quick with 30 browsers at once,
and does the server give its memory back when they close?

    python bench/class_load.py [--sessions 30]

A freshly started ``streamlit run`` (tests/appserver.py) serves N browser sessions at once (N
contexts in one headless Chromium at /usr/bin/chromium). Each opens the Dataset page, then Evaluate,
where it moves the threshold slider 5 times, then Predict, where it checks Grad-CAM is the chosen
saliency method and uploads a film. A threshold move is timed from the key press until the
"Metrics versus threshold" chart draws its line at the new value and the script has stopped; a
prediction from handing the file to the uploader until that film's probability and Grad-CAM overlay
are on screen and the script has stopped. Each time is split: the server's part ends when the page's
websocket brings the script's end (``script_finished``), the rest is the browser drawing. Errors:
timeouts and other exceptions, exception and error boxes on a page, JavaScript errors, and
tracebacks in the server's log; the goal is 0.

Memory is the RSS of the streamlit process and its children, sampled every 0.5 s: fresh, after one
warm-up journey (imports, data sets and model loaded: the baseline), at peak, with all sessions open
and done, and 60 s after the server has seen every browser go. Streamlit's own account
(``/_stcore/metrics``) says what it holds: open sessions' state, uploaded files, images, caches.
A real class runs its browsers on its own computers; here they share the server's cores, so
Chromium runs at the lowest priority (nice 19) and the server gets the cores first. CPU over the
sessions is given in cores: the server's, the browsers', and the rest (this script, anyone else's);
and the server's CPU seconds per session, what a class costs the server whatever the machine.

Everything lives in a temporary folder (``PNEUMO_RUNS``, ``PNEUMO_CACHE``): a 1-epoch CNN trained at
64 px on the synthetic set gives Evaluate and Predict a model; the film is a Kermany test film from
../shared/data/chest_xray/test (a synthetic one when that is absent), written as PNG. Try
``--sessions 3`` first: 30 sessions take several minutes on a 2-core machine, where Chromium's pages
and the server share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, WebSocket, async_playwright
from playwright.async_api import Error as PlaywrightError
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumo.data import synthetic
from tests.appserver import ROOT, streamlit_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
KERMANY_TEST = ROOT.parent / "shared" / "data" / "chest_xray" / "test" / "PNEUMONIA"
FILM_NAME = "class-load-film.png"
MOVES = 5
AFTER_CLOSE_S = 60
SAMPLE_S = 0.5
BROWSER_NICE = 19
TIMEOUT_MS = 600_000  # per wait: 30 sessions queue for 2 cores, and the warm-up decodes the data set
POLL_MS = 50  # page checks while waiting; requestAnimationFrame polling in 30 pages would load the cores
SLIDER = "Decision threshold (probability of pneumonia)"

# The script has stopped (not "initial", "running" or "rerunRequested") and nothing from an
# earlier run is left on the page.
SETTLED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null && app.dataset.testScriptState === 'notRunning'
      && document.querySelector('[data-stale="true"]') === null;
}"""
THRESHOLD_SHOWN = f"""(target) => ({SETTLED})() && [...document.querySelectorAll('.js-plotly-plot')].some(
  g => (g.layout?.shapes ?? []).some(s => Math.abs(s.x0 - target) < 1e-6))"""
GRAD_CAM_SHOWN = """() => [...document.querySelectorAll('[data-testid="stImage"]')].some(e => {
  const caption = e.querySelector('[data-testid="stImageCaption"]');
  const img = e.querySelector('img');
  return caption?.innerText.trim() === 'Grad-CAM' && img?.complete && img.naturalWidth > 0;
})"""
PREDICTION_SHOWN = f"""(name) => ({SETTLED})() && ({GRAD_CAM_SHOWN})()
  && [...document.querySelectorAll('[data-testid="stImageCaption"]')].some(c => c.innerText.includes(name))
  && [...document.querySelectorAll('[data-testid="stMetric"]')].some(
       m => m.innerText.includes('Probability of pneumonia'))"""
ERRORS_SHOWN = """() => {
  const exceptions = [...document.querySelectorAll('[data-testid="stException"]')];
  const alerts = [...document.querySelectorAll('[data-testid="stAlertContentError"]')]
      .filter(a => !a.closest('[data-testid="stException"]'));
  return [...exceptions, ...alerts].map(e => e.innerText.replace(/\\s+/g, ' ').slice(0, 200));
}"""


# --- preparation ---------------------------------------------------------------------------


def prepare(work: Path) -> tuple[dict[str, str], Path]:
    """The server's environment, with one finished run in its run store, and the film to upload."""
    env = {**os.environ, "PNEUMO_CACHE": str(work / "cache"), "PNEUMO_RUNS": str(work / "runs")}
    env.pop("PNEUMO_DATA", None)
    train = subprocess.run(
        [sys.executable, "-m", "pneumo", "train", "--dataset", "synthetic", "--image-size", "64", "--epochs", "1",
         "--name", "class load"], cwd=ROOT, env=env, capture_output=True, text=True)
    if train.returncode != 0:
        raise RuntimeError(f"training the bench's run failed:\n{train.stdout[-2000:]}\n{train.stderr[-2000:]}")
    film = work / FILM_NAME
    real = sorted(KERMANY_TEST.glob("*.jpeg"))
    if real:
        Image.open(real[0]).convert("L").save(film)
    else:
        case = next(c for c in synthetic.cases() if c.split == "test" and c.label == 1)
        Image.fromarray(synthetic.draw(case, 224)[0]).save(film)
    return env, film


# --- the server: memory, CPU and what Streamlit says it holds ---------------------------------


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return parents


def server_pid() -> int:
    """The streamlit process tests.appserver started: this process's child running streamlit."""
    for pid, parent in _parents().items():
        try:
            if parent == os.getpid() and b"streamlit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise RuntimeError("no streamlit child process found")


def _tree(pid: int, parents: dict[int, int]) -> list[int]:
    """``pid`` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += [child for child, parent in parents.items() if parent == current]
    return tree


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total = 0
    for member in _tree(pid, _parents()):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(found[1]) * 1024 if found else 0
    return total


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


@dataclass
class CpuSnapshot:
    """Cumulative CPU seconds: the server's processes, the browsers' (Playwright's driver and
    Chromium: this process's other descendants), and the whole machine's busy time."""

    wall: float
    server: dict[int, float]
    browsers: dict[int, float]
    machine: float

    @staticmethod
    def take(server: int) -> CpuSnapshot:
        parents = _parents()
        served = _tree(server, parents)
        others = [pid for pid in _tree(os.getpid(), parents) if pid not in served and pid != os.getpid()]
        ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        return CpuSnapshot(time.monotonic(), _cpu_seconds(served), _cpu_seconds(others),
                           busy / os.sysconf("SC_CLK_TCK"))

    def cores_since(self, start: CpuSnapshot) -> dict[str, float]:
        """Cores kept busy on average between ``start`` and this snapshot, and the seconds it took."""
        wall = self.wall - start.wall

        def used(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items()) / wall

        return {"server": used(start.server, self.server), "browsers": used(start.browsers, self.browsers),
                "machine": (self.machine - start.machine) / wall, "seconds": wall}


def lower_browsers() -> None:
    """Every thread of Chromium's processes (this process's descendants) at the lowest CPU priority:
    in a classroom the browsers run on the students' computers, not on the server's cores."""
    for pid in _tree(os.getpid(), _parents()):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "chromium":
                continue
            for task in Path(f"/proc/{pid}/task").iterdir():
                if os.getpriority(os.PRIO_PROCESS, int(task.name)) < BROWSER_NICE:
                    os.setpriority(os.PRIO_PROCESS, int(task.name), BROWSER_NICE)
        except OSError:  # gone meanwhile
            continue


class Watch:
    """Every 0.5 s, in a thread: the RSS of the server's process tree, and Chromium's new processes
    and threads put at the lowest priority."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), tree_rss(self.pid)))
            lower_browsers()
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, moment: float) -> int:
        """The first sample taken at or after ``moment`` (monotonic seconds)."""
        return next(rss for t, rss in self.samples if t >= moment)

    def peak(self, since: float) -> int:
        return max(rss for t, rss in self.samples if t >= since)


def accounting(url: str, family: str | None = None) -> dict[str, float]:
    """What Streamlit says it holds (/_stcore/metrics): bytes per kind, and its active sessions."""
    query = f"?families={family}" if family else ""
    with urllib.request.urlopen(f"{url}/_stcore/metrics{query}", timeout=60) as response:
        text = response.read().decode()
    held: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cache_memory_bytes{"):
            kind = re.search(r'cache_type="([^"]*)"', line)[1]
            held[kind] = held.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("active_sessions "):
            held["active sessions"] = float(line.rsplit(" ", 1)[1])
    return held


async def all_gone(url: str) -> None:
    """Until the server has disconnected every session (closing a browser reaches it a moment later)."""
    while accounting(url, "active_sessions")["active sessions"] > 0:
        await asyncio.sleep(0.2)


def tracebacks(log: str) -> list[str]:
    """The exception line of each traceback in the server's log."""
    found, inside = [], False
    for line in log.splitlines():
        if line.startswith("Traceback"):
            inside = True
        elif inside and line and not line.startswith(" "):
            found.append(line[:200])
            inside = False
    return found


# --- one student ---------------------------------------------------------------------------


@dataclass
class Results:
    steps: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # step -> (seconds, server's part)
    journeys: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ScriptEnds:
    """When the page's websocket brought each ``script_finished`` message."""

    def __init__(self, page: Page) -> None:
        self.times: list[float] = []
        page.on("websocket", self._watch)

    def _watch(self, ws: WebSocket) -> None:
        ws.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            message = ForwardMsg()
            message.ParseFromString(payload)
            if message.WhichOneof("type") == "script_finished":
                self.times.append(time.perf_counter())

    def record(self, results: Results, step: str, start: float) -> None:
        """The step's time since ``start`` and its server part: until the last script end before now."""
        now = time.perf_counter()
        ends = [t for t in self.times if start <= t <= now]
        results.steps.setdefault(step, []).append((now - start, (ends[-1] if ends else now) - start))


async def _check(page: Page, name: str, where: str, results: Results) -> None:
    """Exception and error boxes on the page, as errors."""
    results.errors += [f"{name}, {where}: {text}" for text in await page.evaluate(ERRORS_SHOWN)]


async def _settled(page: Page, text: str, exact: bool = False) -> None:
    await page.get_by_text(text, exact=exact).first.wait_for()
    await page.wait_for_function(SETTLED, polling=POLL_MS)


async def journey(browser: Browser, url: str, film: Path, name: str, results: Results) -> BrowserContext:
    """Dataset, 5 threshold moves on Evaluate, a Grad-CAM prediction on Predict. The context is
    left open (a student keeps the tab) and returned."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("pageerror", lambda exc: results.errors.append(f"{name}: JavaScript error: {exc}"))
    ends = ScriptEnds(page)
    where = "Dataset"
    start = time.perf_counter()
    try:
        await page.goto(url)
        await _settled(page, "Images per split and class")
        ends.record(results, "open Dataset (first page)", start)
        await _check(page, name, where, results)

        where, clicked = "Evaluate", time.perf_counter()
        await page.get_by_role("link", name="Evaluate").click()
        await _settled(page, "Errors", exact=True)
        slider = page.get_by_role("slider", name=SLIDER)
        await page.wait_for_function(THRESHOLD_SHOWN, arg=float(await slider.input_value()), polling=POLL_MS)
        ends.record(results, "open Evaluate", clicked)
        for _ in range(MOVES):
            target = round(float(await slider.input_value()) + 0.01, 2)
            moved = time.perf_counter()
            await slider.press("ArrowRight")
            await page.wait_for_function(THRESHOLD_SHOWN, arg=target, polling=POLL_MS)
            ends.record(results, "threshold move", moved)
        await _check(page, name, where, results)

        where, clicked = "Predict", time.perf_counter()
        await page.get_by_role("link", name="Predict").click()
        await _settled(page, "Probability of pneumonia")  # an example film, explained at once
        ends.record(results, "open Predict (an example explained)", clicked)
        grad_cam = page.get_by_role("button", name="Grad-CAM", exact=True)
        if await grad_cam.get_attribute("aria-pressed") != "true":
            await grad_cam.click()
            await page.wait_for_function(f"() => ({SETTLED})() && ({GRAD_CAM_SHOWN})()", polling=POLL_MS)
        await page.get_by_text("Upload an image", exact=True).click()
        await _settled(page, "Chest X-ray (JPEG, PNG or DICOM)")
        uploaded = time.perf_counter()
        await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(film)
        await page.wait_for_function(PREDICTION_SHOWN, arg=film.name, polling=POLL_MS)
        ends.record(results, "prediction (upload to probability and Grad-CAM)", uploaded)
        await _check(page, name, where, results)
        results.journeys.append(time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - any failure is a finding to report, not a reason to stop the class
        results.errors.append(f"{name}, {where}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        with contextlib.suppress(PlaywrightError):  # what the page shows, if it still answers
            await _check(page, name, where, results)
    return context


# --- the class -----------------------------------------------------------------------------


@dataclass
class Usage:
    """The server's memory (RSS, bytes) at the bench's moments, and CPU over the sessions."""

    fresh: int = 0
    before: int = 0
    peak: int = 0
    open: int = 0
    after: int = 0
    after_close: list[tuple[int, int]] = field(default_factory=list)  # (seconds after close, bytes)
    cores: dict[str, float] = field(default_factory=dict)  # CpuSnapshot.cores_since, over the sessions
    account: dict[str, dict[str, float]] = field(default_factory=dict)  # moment -> accounting()


async def run_class(url: str, film: Path, sessions: int, results: Results, warm_up: Results) -> Usage:
    pid = server_pid()
    usage = Usage(fresh=tree_rss(pid))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        with Watch(pid) as watch:
            await (await journey(browser, url, film, "warm-up", warm_up)).close()
            await all_gone(url)
            usage.before = tree_rss(pid)
            usage.account["before"] = accounting(url)
            started, cpu = time.monotonic(), CpuSnapshot.take(pid)
            contexts = await asyncio.gather(*(journey(browser, url, film, f"session {i + 1}", results)
                                              for i in range(sessions)))
            usage.cores = CpuSnapshot.take(pid).cores_since(cpu)
            usage.open = tree_rss(pid)
            usage.account["all open"] = accounting(url)
            await asyncio.gather(*(context.close() for context in contexts))
            await all_gone(url)
            closed = time.monotonic()
            await asyncio.sleep(AFTER_CLOSE_S)
            usage.after = tree_rss(pid)
            usage.account[f"{AFTER_CLOSE_S} s after close"] = accounting(url)
        await browser.close()
    usage.peak = watch.peak(started)
    usage.after_close = [(s, watch.at(closed + s)) for s in (0, 10, 30)]
    return usage


# --- report --------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p95 = np.percentile(values, [50, 95])
    return f"{p50:.2f} / {p95:.2f} s"


def report(command: str, sessions: int, results: Results, warm_up: Results, usage: Usage,
           server_errors: list[str]) -> None:
    errors = warm_up.errors + results.errors
    growth = usage.peak - usage.before
    cores = usage.cores
    kept = usage.after - usage.before
    rows = [
        ("sessions at once (Dataset, 5 threshold moves, Grad-CAM on an upload)", f"{sessions}"),
        ("errors in the browsers (goal 0)", f"{len(errors)}"),
        ("tracebacks in the server's log (goal 0)", f"{len(server_errors)}"),
    ]
    for step, times in results.steps.items():
        total, server = (list(column) for column in zip(*times, strict=True))
        rows.append((f"{step}, p50 / p95",
                     f"{_spread(total)} (server {_spread(server)}), max {max(total):.2f} s, n={len(total)}"))
    rows += [
        ("whole journey, p50 / p95", f"{_spread(results.journeys)}, n={len(results.journeys)}"),
        ("warm-up journey alone, first visitor (imports, data set, model)",
         ", ".join(f"{seconds:.2f} s" for seconds in warm_up.journeys) or "-"),
        (f"CPU during the sessions, in cores of the machine's {os.cpu_count()}",
         f"server {cores['server']:.2f}, browsers {cores['browsers']:.2f}, "
         f"rest of the machine {cores['machine'] - cores['server'] - cores['browsers']:.2f}"),
        ("server CPU per session (its whole journey)", f"{cores['server'] * cores['seconds'] / sessions:.1f} s"),
        ("server RSS, fresh", _mib(usage.fresh)),
        ("server RSS, before the sessions (after the warm-up journey)", _mib(usage.before)),
        ("server RSS, peak during the sessions", f"{_mib(usage.peak)} (+{_mib(growth)})"),
        ("server RSS, all sessions open and done", _mib(usage.open)),
        *[(f"server RSS, {s} s after the server saw all close", _mib(rss)) for s, rss in usage.after_close],
        (f"server RSS, {AFTER_CLOSE_S} s after the server saw all close",
         f"{_mib(usage.after)} (keeps {_mib(kept)} of the +{_mib(growth)})"),
    ]
    width = max(len(value) for _, value in rows)
    print(f"command: {command}\n")
    print(f"| {'figure':<70} | {'value':<{width}} |")
    print(f"|{'-' * 72}|{'-' * (width + 2)}|")
    for name, value in rows:
        print(f"| {name:<70} | {value:<{width}} |")
    moments = list(usage.account)
    print(f"\n| Streamlit's own account (/_stcore/metrics) | {' | '.join(moments)} |")
    print(f"|---|{'---|' * len(moments)}")
    for kind in sorted({kind for held in usage.account.values() for kind in held}):
        values = [usage.account[m].get(kind, 0.0) for m in moments]
        shown = [f"{v:.0f}" if kind == "active sessions" else _mib(v) if v >= 2**20 else f"{v / 1024:,.1f} KiB"
                 for v in values]
        print(f"| {kind} | {' | '.join(shown)} |")
    for line in errors + [f"server log: {e}" for e in server_errors]:
        print(f"  ! {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=30, help="browser sessions at once (default 30)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"Chromium is needed at {CHROMIUM} (apt install chromium)")
    results, warm_up = Results(), Results()
    with tempfile.TemporaryDirectory(prefix="pneumo-class-load-") as folder:
        work = Path(folder)
        env, film = prepare(work)
        with open(work / "server.log", "wb") as log, streamlit_server(ROOT / "streamlit_app.py", env, log) as url:
            usage = asyncio.run(run_class(url, film, args.sessions, results, warm_up))
        server_errors = tracebacks((work / "server.log").read_text(errors="replace"))
    report(f"python bench/class_load.py --sessions {args.sessions}", args.sessions, results, warm_up, usage,
           server_errors)


if __name__ == "__main__":
    main()
