"""Runs train in processes of their own, through a queue, so they outlive page reruns,
page changes and closed browsers: the one job interface (submit, status, logs, stop, resume)
the Train page and the CLI use, whichever backend trains (``pneumo.runs.backends``: local
processes, or jobs on a Ray cluster).

At most as many runs train at once as their backend has slots (locally ``PNEUMO_MAX_RUNS``,
default 1); the rest wait as queued and start by themselves when one ends (the ending worker,
and every UI poll, call ``schedule``). The queue is fair: owners take turns (``queue_order``),
so one student's six runs do not hold up the class; a classroom server's policy also caps each student's runs and disk.
A file lock makes ``schedule`` safe to call from many browser sessions and processes at the
same moment: no run is lost or started twice. A process that dies without a word (kill -9, out
of memory), or a Ray job the cluster reports failed or lost, is noticed by ``reconcile`` and its
run marked failed with the reason.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from pneumo.access import GB, LOCAL, Policy, User
from pneumo.runs import backends
from pneumo.runs.store import Run, RunState, RunStore, tidy_log
from pneumo.training.config import MAX_NAME_CHARS, TrainConfig


class Refused(ValueError):
    """A run that cannot start, refused before anything is written; the message says why."""


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


def cannot_start(store: RunStore, by: User, policy: Policy, backend: backends.Backend | None = None) -> str | None:
    """Why ``by`` cannot start a run on ``backend`` (``backends.chosen()`` when not given) now:
    read-only runs folder, Ray cluster not answering, run count, disk budget; or None."""
    if not writable(store):
        return READ_ONLY
    try:
        (backend or backends.chosen()).describe()
    except backends.Unavailable as exc:
        return str(exc)
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
           policy: Policy | None = None, backend: backends.Backend | None = None) -> Run:
    """Validate, create a queued run owned by ``by`` for ``backend`` (``backends.chosen()`` when
    not given) and start it if a slot is free.

    ``policy``: the server's rules (read from the environment when not given): ``Refused`` when
    the run's files lie outside the data roots, ``by`` has used up their share, or the Ray cluster
    cannot take the run (not installed, not answering, runs folder not shared).
    """
    store = store or RunStore()
    policy = policy or Policy.from_env()
    backend = backend or backends.chosen()
    try:
        policy.check_config(config)
    except PermissionError as exc:
        raise Refused(str(exc)) from exc
    problems = config.problems()
    if problems:
        raise Refused("; ".join(problems))
    try:
        backend.check(store, config)
    except backends.Unavailable as exc:
        raise Refused(str(exc)) from exc
    try:
        with _queue_lock(store):  # two clicks at once cannot both take the last place
            reason = cannot_start(store, by, policy, backend)
            if reason:
                raise Refused(reason)
            run = store.create(config, owner=by, **backend.recorded())
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


def schedule(store: RunStore | None = None, limit: int | None = None, only: str | None = None) -> list[Run]:
    """Mark dead runs failed, then start queued runs (in ``queue_order``) while their backend has
    slots free (``limit`` overrides the local backend's). ``only``: start only runs of that backend
    (a worker on a Ray node must not start local runs there).

    Nothing to do on a read-only runs folder: no run can have started there.
    """
    store = store or RunStore()
    started = []
    if not writable(store):
        return started
    with _queue_lock(store):
        reconcile(store)
        runs = [r for r in store.runs() if r.damage is None]
        running = Counter(_backend_key(r) for r in runs if r.state == RunState.RUNNING)
        slots: dict[tuple, int] = {}
        for run in queue_order(runs):
            key = _backend_key(run)
            if only is not None and key[0] != only:
                continue
            backend = backends.of(run)
            if key not in slots:
                slots[key] = limit if limit and backend.name == backends.LOCAL else backend.slots()
            if running[key] >= slots[key]:
                continue
            try:
                backend.start(run)
            except backends.Unavailable:
                slots[key] = 0  # the cluster does not answer: its runs wait, the others go on
                continue
            started.append(run)
            running[key] += 1
    return started


def _backend_key(run: Run) -> tuple[str, str | None]:
    """Runs sharing a backend share its slots: local, or one Ray cluster."""
    status = run.status()
    return status.get("backend", backends.LOCAL), status.get("ray_address")


def reconcile(store: RunStore) -> list[Run]:
    """Mark runs whose process or job ended without a word as failed, with the reason; return them.

    Each backend is asked first and the run's state read after, so a run that finished between
    the two is not mistaken for a dead one (a worker marks its run before it exits).
    """
    groups: dict[tuple, list[Run]] = {}
    for run in store.runs():
        if run.damage is None and run.state == RunState.RUNNING:
            groups.setdefault(_backend_key(run), []).append(run)
    dead = []
    for runs in groups.values():
        for run_id, reason in backends.of(runs[0]).ended(runs).items():
            run = store.get(run_id)
            status = run.status()
            if status["state"] != RunState.RUNNING:
                continue
            epoch = status.get("epoch")
            where = f"during epoch {epoch}" if epoch else "before its first epoch"
            reason = reason or (f"The training process (pid {status.get('pid')}) died {where} without finishing: "
                                "killed, or out of memory.")
            run.update_status(state=RunState.FAILED, ended=time.time(), error=(
                f"{reason} Everything written so far is kept; resume to go on from the last checkpoint."))
            dead.append(run)
    return dead


def log_tail(run: Run, lines: int = 30) -> str:
    """The last lines of the run's output, wherever it trains (``store.tidy_log``)."""
    return tidy_log(backends.of(run).log(run), lines)


def stop(run: Run, by: User) -> None:
    """Graceful stop: the trainer checks the flag after every batch and saves the model so far.
    A queued run is simply taken off the queue."""
    run.require(by, "stop")
    with _queue_lock(RunStore(run.path.parent)):
        if run.state == RunState.QUEUED:
            run.update_status(state=RunState.STOPPED, ended=time.time(), note="cancelled before it started")
            return
    run.file("stop").touch()
    backends.of(run).cancel(run)


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
            run.update_status(state=RunState.QUEUED, error=None, note=None, ended=None, batch=0,
                              resumed=int(run.status().get("resumed", 0)) + 1)  # batch: its epoch starts again
    except OSError as exc:
        raise Refused(READ_ONLY) from exc
    schedule(store)
