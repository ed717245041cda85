"""Bench: what students watching a run cost the server. Watch polls a queued or running run every
few seconds; an ended run is drawn once and only its state is read after that.

    python bench/watch_cost.py [--sessions 10] [--seconds 30]

A fresh ``streamlit run`` (tests/appserver.py) with one run in a temporary run store: 8 epochs of
history and 1,304 batches (all five Watch charts drawn), first "running" (held by a sleeping
process named after the run, as a worker is, and given a new batch every 0.5 s), then "finished".
N browser sessions (contexts in one headless Chromium at nice 19, as in bench/class_load.py) open
Watch on it; once every page shows the run, the server's CPU is measured for the given seconds.
The running run is the baseline: it has to be polled. Printed: cores the server keeps busy, CPU
seconds per watcher per minute, and the ratio of each state to the running one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.class_load import CHROMIUM, CHROMIUM_ARGS, CpuSnapshot, lower_browsers, server_pid
from pneumo.runs.store import Run, RunState, RunStore, append_row
from pneumo.training.callbacks import BATCH_COLUMNS, HISTORY_COLUMNS
from pneumo.training.config import TrainConfig
from tests.appserver import ROOT, streamlit_server

EPOCHS, BATCHES = 8, 163  # the default run on the Kermany set: 8 epochs of 163 batches


def make_run(runs: Path) -> Run:
    """A run with a full history, as a worker leaves it after its last epoch."""
    run = RunStore(runs).create(TrainConfig(name="watched run", epochs=EPOCHS))
    for epoch in range(1, EPOCHS + 1):
        auc = 0.9 + 0.01 * epoch
        append_row(run.file("history.csv"), {
            "epoch": epoch, "phase": 1, "loss": 1 / epoch, "accuracy": auc, "auc": auc, "val_loss": 1.1 / epoch,
            "val_accuracy": auc, "val_auc": auc, "learning_rate": 1e-3, "seconds": 70.0}, HISTORY_COLUMNS)
        for batch in range(BATCHES):
            add_batch(run, (epoch - 1) * BATCHES + batch)
    return run


def add_batch(run: Run, step: int) -> None:
    """Batch ``step``'s row, as the worker's callback appends it (past the last epoch's end: still its)."""
    append_row(run.file("batches.csv"), {"step": step, "epoch": min(step // BATCHES + 1, EPOCHS), "phase": 1,
                                         "batch": step % BATCHES, "loss": 1 / (1 + step / 100),
                                         "learning_rate": 1e-3}, BATCH_COLUMNS)


def add_batches(run: Run, stop: threading.Event) -> None:
    """A batch every half second, as the default run trains on a 2-core CPU, until ``stop``."""
    step = EPOCHS * BATCHES
    while not stop.wait(0.5):
        add_batch(run, step)
        step += 1


def watch_cost(url: str, run: Run, state: RunState, sessions: int, seconds: float) -> dict[str, float]:
    """Server cores used while ``sessions`` browsers watch ``run`` in ``state`` (a running run gets
    new batches meanwhile)."""
    label = f"watched run (synthetic) · {state}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        lower_browsers()
        pages = []
        for _ in range(sessions):
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{url}/train", timeout=300_000)
            page.get_by_text("Watch", exact=True).click(timeout=300_000)
            pages.append(page)
        for page in pages:
            expect(page.locator(f'input[aria-label="Run"][value="{label}"]')).to_be_visible(timeout=300_000)
            expect(page.locator(".js-plotly-plot")).to_have_count(5, timeout=300_000)
        time.sleep(3)  # the last page's first draw done
        stop = threading.Event()
        adding = threading.Thread(target=add_batches, args=(run, stop))
        if state == RunState.RUNNING:
            adding.start()
        start = CpuSnapshot.take(server_pid())
        time.sleep(seconds)
        used = CpuSnapshot.take(server_pid()).cores_since(start)
        stop.set()
        if adding.is_alive():
            adding.join()
        browser.close()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10, help="browser sessions watching at once (default 10)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the server's CPU is measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PNEUMO_CACHE": str(work / "cache"), "PNEUMO_RUNS": str(work / "runs")}
        env.pop("PNEUMO_DATA", None)
        run = make_run(work / "runs")
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", run.id])
        rows = []
        try:
            with streamlit_server(ROOT / "streamlit_app.py", env) as url:
                run.update_status(state=RunState.RUNNING, pid=worker.pid, started=time.time(), device="CPU",
                                  epochs_total=EPOCHS, batches_per_epoch=BATCHES, epoch=EPOCHS, batch=BATCHES - 1)
                rows.append((RunState.RUNNING, watch_cost(url, run, RunState.RUNNING, args.sessions, args.seconds)))
                run.update_status(state=RunState.FINISHED, ended=time.time())
                rows.append((RunState.FINISHED, watch_cost(url, run, RunState.FINISHED, args.sessions, args.seconds)))
        finally:
            worker.kill()
            worker.wait()
    base = rows[0][1]["server"]
    print(f"\n{args.sessions} sessions watching one run, server CPU over {args.seconds:.0f} s:\n")
    print("| run | server cores | CPU s per watcher per minute | ratio to running |")
    print("|---|---|---|---|")
    for state, used in rows:
        per_minute = used["server"] * 60 / args.sessions
        print(f"| {state} | {used['server']:.3f} | {per_minute:.2f} | {used['server'] / base:.2f} |")


if __name__ == "__main__":
    main()
