"""Runs train in processes of their own, through a queue, so they outlive page reruns,
page changes and closed browsers.

At most ``max_parallel`` runs train at once (``PNEUMO_MAX_RUNS``, default 1); the rest wait
as queued and start by themselves when one ends (the ending worker, and every UI poll, call
``schedule``). A file lock makes ``schedule`` safe to call from many browser sessions and
processes at the same moment: no run is lost or started twice. A process that dies without
a word (kill -9, out of memory) is noticed by ``reconcile`` and its run marked failed.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pneumo.paths import PROJECT_ROOT
from pneumo.runs.store import Run, RunState, RunStore
from pneumo.training.config import TrainConfig


class InvalidConfig(ValueError):
    """A config refused before anything starts; the message lists every problem."""


def max_parallel() -> int:
    try:
        return max(1, int(os.environ.get("PNEUMO_MAX_RUNS", "1")))
    except ValueError:
        return 1


@contextmanager
def _queue_lock(store: RunStore) -> Iterator[None]:
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / ".queue.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def submit(config: TrainConfig, store: RunStore | None = None) -> Run:
    """Validate, create a queued run and start it if a slot is free."""
    problems = config.problems()
    if problems:
        raise InvalidConfig("; ".join(problems))
    store = store or RunStore()
    run = store.create(config)
    schedule(store)
    return run


def schedule(store: RunStore | None = None, limit: int | None = None) -> list[Run]:
    """Mark dead runs failed, then start queued runs (oldest first) while slots are free."""
    store = store or RunStore()
    limit = limit or max_parallel()
    started = []
    with _queue_lock(store):
        reconcile(store)
        runs = [r for r in store.runs() if r.damage is None]
        running = sum(r.state == RunState.RUNNING for r in runs)
        for run in sorted((r for r in runs if r.state == RunState.QUEUED), key=lambda r: r.status()["created"]):
            if running >= limit:
                break
            _spawn(run)
            started.append(run)
            running += 1
    return started


def _spawn(run: Run) -> None:
    log = open(run.file("log.txt"), "ab")  # noqa: SIM115 - the child process owns it from here
    process = subprocess.Popen(
        [sys.executable, "-m", "pneumo", "worker", str(run.path)],
        cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # not killed with the UI, not by a Ctrl-C meant for streamlit
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    log.close()
    _children.append(process)
    run.update_status(state=RunState.RUNNING, pid=process.pid, started=time.time(), error=None)


_children: list[subprocess.Popen] = []  # reaped in reconcile, so dead workers leave no zombies


def is_alive(run: Run) -> bool:
    """Whether the run's training process still exists (and is that run's, not a reused pid)."""
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)
    pid = run.status().get("pid")
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    try:
        if proc.exists():
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X") and run.id in (proc / "cmdline").read_text()
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True


def reconcile(store: RunStore) -> list[Run]:
    """Mark runs whose process died without a word as failed; return them."""
    dead = []
    for run in store.runs():
        if run.damage is not None:
            continue
        status = run.status()
        if status["state"] == RunState.RUNNING and not is_alive(run):
            epoch = status.get("epoch")
            where = f" during epoch {epoch}" if epoch else " before its first epoch"
            run.update_status(state=RunState.FAILED, ended=time.time(), error=(
                f"The training process (pid {status.get('pid')}) died{where} without finishing: killed, or out "
                "of memory. Everything written so far is kept; resume to go on from the last checkpoint."))
            dead.append(run)
    return dead


def stop(run: Run) -> None:
    """Graceful stop: the trainer checks the flag after every batch and saves the model so far.
    A queued run is simply taken off the queue."""
    with _queue_lock(RunStore(run.path.parent)):
        if run.state == RunState.QUEUED:
            run.update_status(state=RunState.STOPPED, ended=time.time(), note="cancelled before it started")
            return
    run.file("stop").touch()


def resume(run: Run) -> None:
    """Put a failed or stopped run back in the queue; it goes on from its last checkpoint."""
    if not run.state.resumable:
        raise ValueError(f"only failed or stopped runs can be resumed; this one is {run.state}")
    run.file("stop").unlink(missing_ok=True)
    run.update_status(state=RunState.QUEUED, error=None, note=None, ended=None,
                      resumed=int(run.status().get("resumed", 0)) + 1)
    schedule(RunStore(run.path.parent))
