"""Atomic replacement: readers see the old file or the new one, never half; a failed write keeps the old."""

import json
import threading
from pathlib import Path

import pytest

from pneumo.files import replace_atomically, write_json


def test_write_json_is_atomic_under_concurrent_readers(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_json(path, {"n": 0, "pad": "x" * 20000})
    errors = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                json.loads(path.read_text())
            except ValueError as exc:  # a torn file would show up here
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(300):
        write_json(path, {"n": n, "pad": "x" * 20000})
    done.set()
    thread.join()
    assert errors == [] and json.loads(path.read_text())["n"] == 299
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp files left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_litter(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_json(path, {"state": "running"})

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(path, broken)
    assert json.loads(path.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
