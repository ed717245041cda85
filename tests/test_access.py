"""The classroom rules, called on the library as the pages call it: who may change which run,
the fair queue, per-student limits, a read-only runs folder, and the data roots."""

import json
import os
from pathlib import Path

import pytest

from pneumo.access import LOCAL, TEACHER_NAME, Forbidden, Mode, Policy, User, class_user, login_user
from pneumo.runs import jobs
from pneumo.runs.store import RunState, RunStore
from pneumo.training.config import TrainConfig

ANN, BEN, CAL = (class_user(n) for n in ("Ann", "Ben", "Cal"))
TEACHER = class_user("Ms Lee", teacher=True)
CLASS = Policy.from_env({"PNEUMO_TEACHER_PASSCODE": "s3cret"})


def test_modes_come_from_the_configuration() -> None:
    assert Policy.from_env({}) == Policy() and Policy().mode == Mode.SOLO
    assert Policy().max_active_runs is None and Policy().data_roots is None  # solo: no limits
    assert CLASS.mode == Mode.CLASS and CLASS.max_active_runs == 2 and CLASS.data_roots == ()
    login = Policy.from_env({"PNEUMO_TEACHER_EMAILS": "Lee@School.example, ", "PNEUMO_MAX_RUNS_PER_USER": "none"},
                            login=True)
    assert login.mode == Mode.LOGIN and login.max_active_runs is None
    assert login_user(" LEE@school.example", login.teacher_emails).teacher
    assert not login_user("ann@school.example", login.teacher_emails).teacher


def test_names_are_trimmed_and_bounded() -> None:
    assert class_user("  Ann   Smith ").name == "Ann Smith"
    for bad in ("", "   ", "x" * 41, "bell\x07"):
        with pytest.raises(ValueError):
            class_user(bad)


def test_a_student_cannot_take_the_name_the_teachers_unnamed_runs_have() -> None:
    teacher = class_user(TEACHER_NAME, teacher=True)  # unlocked with the passcode, no name typed
    for typed in ("teacher", " Teacher ", "TEACHER"):
        with pytest.raises(ValueError, match="kept for the teacher"):
            class_user(typed)
    assert not class_user("teacher 2").may_manage(teacher.id)


def _stopped(store: RunStore, owner: User, name: str = "") -> object:
    run = store.create(TrainConfig(name=name), owner=owner)
    run.update_status(state=RunState.STOPPED)
    return run


def test_a_student_may_change_only_their_own_runs_and_the_teacher_all(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    anns = _stopped(store, ANN, "ann's run")
    assert anns.owner == "class:Ann"
    for attempt in (lambda: jobs.stop(anns, by=BEN), lambda: jobs.resume(anns, by=BEN, policy=CLASS),
                    lambda: anns.rename("mine now", by=BEN), lambda: store.delete(anns, by=BEN)):
        with pytest.raises(Forbidden, match="Only Ann or the teacher"):
            attempt()
    assert anns.name == "ann's run" and anns.state == RunState.STOPPED and not anns.file("stop").exists()
    anns.rename("renamed by Ann", by=ANN)
    anns.rename("renamed by the teacher", by=TEACHER)
    assert anns.name == "renamed by the teacher"
    store.delete(anns, by=TEACHER)
    assert store.runs() == []


def test_runs_from_before_owners_belong_to_the_teacher_alone(tmp_path: Path) -> None:
    run = _stopped(RunStore(tmp_path), LOCAL)
    status = run.status()
    del status["owner"]
    run.file("status.json").write_text(json.dumps(status))
    with pytest.raises(Forbidden, match="nobody"):
        run.rename("x", by=ANN)
    run.rename("x", by=TEACHER)


def _queued(store: RunStore, owner: User, created: float) -> object:
    run = store.create(TrainConfig(name=f"{owner.name} {created}"), owner=owner)
    run.update_status(created=created)
    return run


def test_the_queue_takes_owners_in_turn(tmp_path: Path) -> None:
    """Ann queued four runs first, then Ben two, then Cal one; Ben already has one training."""
    store = RunStore(tmp_path)
    a = [_queued(store, ANN, t) for t in (1, 2, 3, 4)]
    b = [_queued(store, BEN, t) for t in (5, 6)]
    c = _queued(store, CAL, 7)
    store.create(TrainConfig(), owner=BEN).update_status(state=RunState.RUNNING, created=0)
    order = [r.id for r in jobs.queue_order(store.runs())]
    # turn 0: Ann's first, Cal's; turn 1: Ann's second, Ben's first; turn 2: Ann's third, Ben's second; ...
    assert order == [a[0].id, c.id, a[1].id, b[0].id, a[2].id, b[1].id, a[3].id]


def test_a_student_has_a_run_limit_and_a_disk_budget(tmp_path: Path, tiny_npz: Path) -> None:
    store = RunStore(tmp_path)
    policy = Policy.from_env({"PNEUMO_TEACHER_PASSCODE": "x", "PNEUMO_USER_RUNS_GB": "0.000001",
                              "PNEUMO_DATA_ROOTS": str(tiny_npz.parent)})
    config = TrainConfig(dataset=str(tiny_npz), image_size=64)
    for _ in range(2):
        store.create(config, owner=ANN)  # queued: nothing trains (no schedule call)
    assert "2 runs queued or training" in jobs.cannot_start(store, ANN, policy)
    with pytest.raises(jobs.Refused, match="2 runs queued or training"):
        jobs.submit(config, store, by=ANN, policy=policy)
    assert len(store.runs()) == 2
    for run in store.runs():
        run.update_status(state=RunState.STOPPED)
    assert "your share of this server's disk" in jobs.cannot_start(store, ANN, policy)
    assert jobs.cannot_start(store, BEN, policy) is None and jobs.cannot_start(store, TEACHER, policy) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_runs_folder_refuses_new_runs_and_still_reads(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run = _stopped(store, LOCAL, "kept")
    tmp_path.joinpath("runs").chmod(0o555)
    try:
        with pytest.raises(jobs.Refused, match="cannot be written"):
            jobs.submit(TrainConfig(), store)
        assert jobs.schedule(store) == [] and [r.name for r in store.runs()] == ["kept"]
        assert run.state == RunState.STOPPED
    finally:
        tmp_path.joinpath("runs").chmod(0o755)


def test_a_folder_the_os_calls_read_only_refuses_new_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever runs the tests (root writes anywhere), a folder the OS says is not writable refuses."""
    store = RunStore(tmp_path)
    monkeypatch.setattr(jobs.os, "access", lambda path, mode: False)
    assert jobs.cannot_start(store, LOCAL, Policy()) == jobs.READ_ONLY
    with pytest.raises(jobs.Refused, match="cannot be written"):
        jobs.submit(TrainConfig(), store)
    assert jobs.schedule(store) == [] and store.runs() == []


def test_data_roots_say_the_same_whether_a_path_exists_or_not(tmp_path: Path) -> None:
    root, outside = tmp_path / "class data", tmp_path / "private"
    (root / "chest").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    policy = Policy(mode=Mode.CLASS, data_roots=(root.resolve(),))
    assert policy.check_path(root / "chest") == root / "chest"
    policy.check_path(root / "not yet there")  # inside: the data layer says what is missing
    answers = set()
    for path in (outside, tmp_path / "no such folder", root / ".." / "private", root / "escape", Path("/etc")):
        with pytest.raises(Forbidden) as refused:
            policy.check_dataset(str(path))
        answers.add(str(refused.value))
    assert len(answers) == 1 and "only reads files under" in answers.pop()
    policy.check_dataset("synthetic:3")  # built-in sets read no server path
    with pytest.raises(Forbidden):
        policy.check_config(TrainConfig(dataset="synthetic", model="resnet50", weights=str(outside / "w.h5")))
    with pytest.raises(Forbidden, match="offers no folders"):
        Policy(mode=Mode.CLASS, data_roots=()).check_dataset(str(root))


def test_submit_checks_the_data_roots_before_saying_anything_about_the_file(tmp_path: Path) -> None:
    policy = Policy(mode=Mode.CLASS, data_roots=((tmp_path / "data").resolve(),))
    with pytest.raises(jobs.Refused, match="only reads files under"):
        jobs.submit(TrainConfig(dataset="/etc"), RunStore(tmp_path / "runs"), by=ANN, policy=policy)
    assert RunStore(tmp_path / "runs").runs() == []


def test_a_shared_server_shows_no_server_paths_in_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setenv("PNEUMO_RUNS", str(tmp_path / "runs"))
    log = (f'File "{sys.prefix}/lib/python3.11/site-packages/keras/x.py", line 3\n'
           f"run 1 in {tmp_path / 'runs' / 'r1'}; home {Path.home() / '.keras'}")
    assert Policy().redact(log) == log  # solo: the paths are the user's own
    shown = CLASS.redact(log)
    assert sys.prefix not in shown and str(tmp_path) not in shown and str(Path.home()) + "/" not in shown
    assert '"<python>/lib/python3.11/site-packages/keras/x.py"' in shown and "<runs>/r1" in shown
