"""The run store: one folder per training run, under ``models/`` (``PNEUMO_RUNS``).

A run folder holds everything the pages need and everything needed to reproduce it:

    config.json       the TrainConfig
    status.json       state, owner, number, backend (and pid or Ray job), device, timestamps,
                      progress, error text
    environment.json  versions, device and platform the run trained on
    history.csv       one row per epoch (train and val metrics, learning rate, phase)
    batches.csv       one row per training batch (loss, learning rate)
    log.txt           the training process's output
    best.keras        the best model so far (val AUC); last.keras when a run is stopped
    backup/           Keras BackupAndRestore checkpoint, for resuming a killed run
    tensorboard/      TensorBoard logs
    predictions.csv   split,id,label,prob,patient for every val and test image
    threshold.json    the decision threshold last chosen for it on the Evaluate page, and how
    familiarity.npz   where the training films lie in the model's features (pneumo.explain.familiarity)

JSON files are replaced atomically (temp file + rename); CSV rows are appended one whole
line per write, and readers ignore a half-written last line. Writers are single (the
training process); readers are many (every browser session).
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pandas as pd

from pneumo.access import LOCAL, Forbidden, User, owner_name
from pneumo.files import replace_atomically, write_json
from pneumo.paths import runs_dir
from pneumo.training.config import TrainConfig

PREDICTION_COLUMNS = ["split", "id", "label", "prob", "patient"]
DEFAULT_THRESHOLD = 0.5  # a run decides at this threshold until one is chosen for it on the Evaluate page
_LOG_NOISE = re.compile(r"cuInit|cudart_stub|Unable to register cu(DNN|FFT|BLAS)|oneDNN custom operations|"
                        r"TensorFlow binary is optimized|rebuild TensorFlow with|computation_placer|"
                        r"All log messages before absl::InitializeLog")


class RunState(StrEnum):
    """Where a run is in its life; stored as its value in status.json."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def active(self) -> bool:
        """Waiting for a training process or in one: not to be deleted or resumed."""
        return self in (RunState.QUEUED, RunState.RUNNING)

    @property
    def resumable(self) -> bool:
        return self in (RunState.FAILED, RunState.STOPPED)


def append_row(path: Path, row: dict, columns: list[str]) -> None:
    """Append one CSV line (header first if the file is new), in a single write."""
    new = not path.exists() or path.stat().st_size == 0
    line = ",".join(_cell(row.get(c)) for c in columns) + "\n"
    with open(path, "a") as f:
        f.write((",".join(columns) + "\n" if new else "") + line)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value).replace(",", ";").replace("\n", " ")


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV that may be being appended to: a last line without its newline is ignored."""
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return pd.DataFrame()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return pd.DataFrame()
    try:
        # index_col=False: a damaged line with extra fields must be skipped, not turned into an index
        return pd.read_csv(io.StringIO(text), on_bad_lines="skip", index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return pd.DataFrame()


def _table(path: Path, required: tuple[str, ...], text: tuple[str, ...] = ()) -> pd.DataFrame:
    """A run's table (``_numeric``), parsed once per version of its file: Watch re-reads a live
    run's tables every few seconds for everyone watching it. A version is the file's inode, time and
    size: appending changes the size, replacing it whole (``replace_atomically``) the inode."""
    try:
        stat = path.stat()
    except OSError:
        return pd.DataFrame()
    return _parsed(path, (stat.st_ino, stat.st_mtime_ns, stat.st_size), required, text).copy()


@functools.lru_cache(maxsize=64)
def _parsed(path: Path, version: tuple[int, ...], required: tuple[str, ...], text: tuple[str, ...]) -> pd.DataFrame:
    return _numeric(read_csv(path), required, text)


def _numeric(frame: pd.DataFrame, required: tuple[str, ...], text: tuple[str, ...]) -> pd.DataFrame:
    """A table as the pages expect it, or an empty one: the required columns present, every other
    column numeric, rows that are not (a damaged line) dropped."""
    if not set(required) <= set(frame.columns):
        return pd.DataFrame()
    numbers = [c for c in frame.columns if c not in text]
    frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in numbers})
    return frame.dropna(subset=[c for c in required if c in numbers]).reset_index(drop=True)


@dataclass(frozen=True)
class Run:
    """A run folder. Every read tolerates a folder that is being written or is damaged."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(json.loads(self.file("config.json").read_text()))

    def status(self) -> dict:
        return json.loads(self.file("status.json").read_text())

    @property
    def state(self) -> RunState:
        return RunState(self.status()["state"])

    def update_status(self, **changes: object) -> dict:
        status = {**self.status(), **changes, "updated": time.time()}
        write_json(self.file("status.json"), status)
        return status

    @property
    def damage(self) -> str | None:
        """Why this folder cannot be used as a run, or None when it can."""
        for name in ("config.json", "status.json"):
            try:
                data = json.loads(self.file(name).read_text())
            except FileNotFoundError:
                return f"{name} is missing"
            except (OSError, ValueError) as exc:
                return f"{name} is unreadable ({exc})"
            if not isinstance(data, dict):
                return f"{name} does not hold an object"
        try:
            self.config()
        except (TypeError, ValueError) as exc:
            return f"config.json is not a valid configuration ({exc})"
        if self.status().get("state") not in set(RunState):
            return "status.json has no valid state"
        return None

    @property
    def model_problem(self) -> str | None:
        """Why this run's model cannot be used (its predictions and history still can), or None.

        A cheap check, for listing runs: a .keras file is a zip archive.
        """
        for name in ("best.keras", "last.keras"):
            if self.file(name).exists() and not zipfile.is_zipfile(self.file(name)):
                return f"{name} is corrupt (not a Keras archive)"
        if self.state == RunState.FINISHED and self.model_file() is None:
            return "finished, but its model file (best.keras) is missing"
        return None

    @property
    def owner(self) -> str | None:
        """The id of the user who started it (``pneumo.access.User.id``); None for runs from before
        owners were recorded, which only the teacher may change."""
        try:
            return self.status().get("owner")
        except (OSError, ValueError):
            return None

    @property
    def recorded_number(self) -> int | None:
        """The number ``RunStore.create`` gave the run; None for runs from before numbers were kept."""
        try:
            return int(self.status()["number"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def number(self) -> int:
        """The run's place in the order runs were created (it picks the run's colour on every chart);
        runs from before numbers were recorded get one from their id."""
        recorded = self.recorded_number
        return zlib.crc32(self.id.encode()) if recorded is None else recorded

    def require(self, user: User, action: str) -> None:
        """Forbidden unless ``user`` may ``action`` (stop, resume, rename, delete) this run."""
        if not user.may_manage(self.owner):
            raise Forbidden(f"Only {owner_name(self.owner)} or the teacher may {action} this run.")

    def threshold(self) -> dict | None:
        """The saved decision threshold: {"value", "rule", "by"}; None when none was chosen."""
        try:
            saved = json.loads(self.file("threshold.json").read_text())
            return saved if isinstance(saved, dict) and 0.0 <= float(saved["value"]) <= 1.0 else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_threshold(self, value: float, rule: str, by: User) -> None:
        """Keep the threshold chosen for this run, so every page and every browser decides with it."""
        self.require(by, "set the threshold of")
        write_json(self.file("threshold.json"), {"value": float(value), "rule": rule, "by": by.id, "at": time.time()})

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def rename(self, name: str, by: User) -> None:
        """ValueError when the name is not one a new run could take (too long)."""
        self.require(by, "rename")
        config = self.config().with_(name=" ".join(name.split()))
        if config.problems() and not self.config().problems():
            raise ValueError("; ".join(config.problems()))
        write_json(self.file("config.json"), config.to_dict())

    @property
    def name(self) -> str:
        try:
            return self.config().name or self.id
        except (OSError, ValueError, TypeError):
            return self.id

    def history(self) -> pd.DataFrame:
        return _table(self.file("history.csv"), required=("epoch",))

    def batches(self) -> pd.DataFrame:
        return _table(self.file("batches.csv"), required=("step",))

    def predictions(self) -> pd.DataFrame:
        return _table(self.file("predictions.csv"), required=tuple(PREDICTION_COLUMNS[:4]),
                      text=("split", "id", "patient"))

    def write_predictions(self, frame: pd.DataFrame) -> None:
        """predictions.csv, replaced whole: the Evaluate page may be reading the old one."""
        replace_atomically(self.file("predictions.csv"),
                           lambda tmp: frame.reindex(columns=PREDICTION_COLUMNS).to_csv(tmp, index=False))

    def model_file(self) -> Path | None:
        """The model to use: the best one, else the one saved when the run stopped."""
        for name in ("best.keras", "last.keras"):
            if self.file(name).is_file():
                return self.file(name)
        return None

    def log_text(self) -> str:
        """The end of log.txt (the last 64 kB: enough for any tail a page shows)."""
        try:
            with open(self.file("log.txt"), "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


def tidy_log(text: str, lines: int = 30) -> str:
    """A log's last lines as a class should read them: TensorFlow's start-up chatter about CUDA and
    CPU instructions left out (on a CPU machine "failed call to cuInit" alarms people for nothing;
    the run's device is in its status). The log itself keeps every line."""
    return "\n".join([line for line in text.splitlines() if not _LOG_NOISE.search(line)][-lines:])


class RunStore:
    """All runs under one folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runs_dir()

    def create(self, config: TrainConfig, owner: User = LOCAL, **status: object) -> Run:
        """A new queued run folder for a config that has already been validated; ``status``: more
        to record in status.json (the backend that will train it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run = Run(self.root / f"{stamp}-{config.model}-{secrets.token_hex(2)}")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".new-"))
        write_json(tmp / "config.json", config.to_dict())
        write_json(tmp / "status.json", {"state": RunState.QUEUED, "owner": owner.id, "number": self._next_number(),
                                         "created": time.time(), "updated": time.time(), **status})
        tmp.rename(run.path)  # the run appears whole, or not at all
        return run

    def _next_number(self) -> int:
        """One more than the highest run number: consecutive runs get consecutive numbers (and so
        different colours), and deleting a run changes no other run's number."""
        numbers = [n for run in self.runs() if (n := run.recorded_number) is not None]
        return max(numbers, default=-1) + 1

    def runs(self) -> list[Run]:
        """Every run folder, newest first (damaged ones included: check ``Run.damage``)."""
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return [Run(p) for p in sorted(folders, key=lambda p: p.name, reverse=True)]

    def get(self, run_id: str) -> Run:
        path = self.root / run_id
        if run_id in ("", ".", "..") or "/" in run_id or not path.is_dir():
            raise KeyError(f"no run {run_id!r} in {self.root}")
        return Run(path)

    def delete(self, run: Run, by: User) -> None:
        """Remove a run and its files; an active run must be stopped first. The folder is first
        moved aside under a hidden name, in one step, so that a page listing or watching runs never
        reads a half-removed one."""
        run.require(by, "delete")
        if run.damage is None and run.state.active:
            raise ValueError("Stop the run first: it is queued or training.")
        aside = Path(tempfile.mkdtemp(prefix=".deleted-", dir=self.root))
        run.path.rename(aside / run.id)
        shutil.rmtree(aside)
