"""Runs train in processes of their own, through a queue, so they outlive page reruns,
page changes and closed browsers.

At most ``max_parallel`` runs train at once (``PNEUMO_MAX_RUNS``, default 1); the rest wait
as queued and start by themselves when one ends (the ending worker, and every UI poll, call
``schedule``). The queue is fair: owners take turns (``queue_order``), so one student's six runs
do not hold up the class; a classroom server's policy also caps each student's runs and disk.
A file lock makes ``schedule`` safe to call from many browser sessions and processes at the
same moment: no run is lost or started twice. A process that dies without a word (kill -9, out
of memory) is noticed by ``reconcile`` and its run marked failed.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pneumo.access import GB, LOCAL, Policy, User
from pneumo.paths import PROJECT_ROOT
from pneumo.runs.store import Run, RunState, RunStore
from pneumo.training.config import MAX_NAME_CHARS, TrainConfig


class Refused(ValueError):
    """A run that cannot start, refused before anything is written; the message says why."""


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


def writable(store: RunStore) -> bool:
    """Whether runs can be written at all (a read-only disk or folder: the pages only read)."""
    folder = store.root
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


READ_ONLY = ("The runs folder cannot be written (a read-only disk, or no permission), so no run can start. "
             "Everything already there can still be watched, evaluated and used for predictions.")


def cannot_start(store: RunStore, by: User, policy: Policy) -> str | None:
    """Why ``by`` cannot start a run now (read-only runs folder, run count, disk budget), or None."""
    if not writable(store):
        return READ_ONLY
    if by.teacher:
        return None
    mine = [r for r in store.runs() if r.owner == by.id and r.damage is None]
    active = sum(r.state.active for r in mine)
    if policy.max_active_runs is not None and active >= policy.max_active_runs:
        return (f"You have {active} run{'s' * (active != 1)} queued or training, the most this server allows per "
                "person: start another when one ends, or stop one.")
    if policy.run_budget_bytes is not None:
        used = sum(r.disk_bytes() for r in mine)
        if used >= policy.run_budget_bytes:
            return (f"Your runs take {used / GB:.2f} GB, your share of this server's disk is "
                    f"{policy.run_budget_bytes / GB:.2f} GB: delete a run you no longer need to start another.")
    return None


def submit(config: TrainConfig, store: RunStore | None = None, by: User = LOCAL,
           policy: Policy | None = None) -> Run:
    """Validate, create a queued run owned by ``by`` and start it if a slot is free.

    ``policy``: the server's rules (read from the environment when not given): ``Refused`` when
    the run's files lie outside the data roots or ``by`` has used up their share.
    """
    store = store or RunStore()
    policy = policy or Policy.from_env()
    try:
        policy.check_config(config)
    except PermissionError as exc:
        raise Refused(str(exc)) from exc
    problems = config.problems()
    if problems:
        raise Refused("; ".join(problems))
    try:
        with _queue_lock(store):  # two clicks at once cannot both take the last place
            reason = cannot_start(store, by, policy)
            if reason:
                raise Refused(reason)
            run = store.create(config, owner=by)
    except OSError as exc:
        raise Refused(READ_ONLY if not writable(store) else f"The run could not be written: {exc.strerror}.") from exc
    schedule(store)
    return run


SEEDS = 3  # repeats of an experiment the board pools into mean ± sd
SEED_SUFFIX = re.compile(r" · seed \d+$")  # added to a repeat's name, taken off the board's pooled row


def repeat(run: Run, store: RunStore, by: User = LOCAL, policy: Policy | None = None,
           seeds: int = SEEDS) -> tuple[list[Run], str | None]:
    """Queue ``run``'s settings with other seeds until ``seeds`` runs of them exist (the original
    counts, and so do earlier repeats). Returns the runs queued and, when the server refused one
    (the per-person run limit), why: the rest can be asked for again later."""
    config = run.config()
    key = config.settings_key()
    taken = {r.config().seed for r in store.runs() if r.damage is None and r.config().settings_key() == key}
    base = SEED_SUFFIX.sub("", run.name)[: MAX_NAME_CHARS - 14]
    queued, seed = [], config.seed
    while len(taken) < seeds:
        seed += 1
        if seed in taken:
            continue
        try:
            queued.append(submit(config.with_(seed=seed, name=f"{base} · seed {seed}"), store, by, policy))
        except Refused as exc:
            return queued, str(exc)
        taken.add(seed)
    return queued, None


def queue_order(runs: list[Run]) -> list[Run]:
    """The queued runs in the order they will start: owners take turns, each owner's runs oldest
    first, and an owner with runs already training waits behind those with none (round robin)."""
    training = Counter(r.owner for r in runs if r.state == RunState.RUNNING)
    queued = sorted((r for r in runs if r.state == RunState.QUEUED), key=lambda r: r.status()["created"])
    turns, taken = {}, Counter()
    for run in queued:
        turns[run.id] = training[run.owner] + taken[run.owner]
        taken[run.owner] += 1
    return sorted(queued, key=lambda r: turns[r.id])  # stable: equal turns keep the oldest first


def schedule(store: RunStore | None = None, limit: int | None = None) -> list[Run]:
    """Mark dead runs failed, then start queued runs (in ``queue_order``) while slots are free.

    Nothing to do on a read-only runs folder: no run can have started there.
    """
    store = store or RunStore()
    limit = limit or max_parallel()
    started = []
    if not writable(store):
        return started
    with _queue_lock(store):
        reconcile(store)
        runs = [r for r in store.runs() if r.damage is None]
        running = sum(r.state == RunState.RUNNING for r in runs)
        for run in queue_order(runs):
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


def stop(run: Run, by: User) -> None:
    """Graceful stop: the trainer checks the flag after every batch and saves the model so far.
    A queued run is simply taken off the queue."""
    run.require(by, "stop")
    with _queue_lock(RunStore(run.path.parent)):
        if run.state == RunState.QUEUED:
            run.update_status(state=RunState.STOPPED, ended=time.time(), note="cancelled before it started")
            return
    run.file("stop").touch()


def resume(run: Run, by: User, policy: Policy | None = None) -> None:
    """Put a failed or stopped run back in the queue; it goes on from its last checkpoint.
    It counts against its owner's limits again (``Refused`` when they are used up)."""
    run.require(by, "resume")
    store = RunStore(run.path.parent)
    try:
        with _queue_lock(store):
            reason = cannot_start(store, by, policy or Policy.from_env())
            if reason:
                raise Refused(reason)
            if not run.state.resumable:
                raise ValueError(f"only failed or stopped runs can be resumed; this one is {run.state}")
            run.file("stop").unlink(missing_ok=True)
            run.update_status(state=RunState.QUEUED, error=None, note=None, ended=None,
                              resumed=int(run.status().get("resumed", 0)) + 1)
    except OSError as exc:
        raise Refused(READ_ONLY) from exc
    schedule(store)
