"""Who is who on a shared server, and what each may do.

Three modes, chosen by configuration (environment variables, which Streamlit also fills from the
top-level keys of ``.streamlit/secrets.toml``):

- **solo** (nothing set): one person on a laptop, everything allowed, no limits.
- **class** (``PNEUMO_TEACHER_PASSCODE`` set): each browser gives a display name; the passcode
  makes it the teacher. Names are taken on trust, as in a classroom: login mode proves identity.
- **login** (an ``[auth]`` section in the secrets: Streamlit's ``st.login``): the identity is the
  e-mail address the OpenID Connect provider vouches for; ``PNEUMO_TEACHER_EMAILS`` names the
  teachers.

The rules live here and are enforced by the library (the run store and the job queue check the
user they are given), so a page that forgets a check still cannot stop someone else's run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pneumo.training.config import TrainConfig

GB = 1024**3
MAX_USER_NAME_CHARS = 40


class Mode(StrEnum):
    SOLO = "solo"
    CLASS = "class"
    LOGIN = "login"


class Forbidden(PermissionError):
    """An action this user may not take; the message is meant for them."""


@dataclass(frozen=True)
class User:
    """Someone using the app. ``id`` is what runs record as their owner."""

    id: str
    teacher: bool = False

    @property
    def name(self) -> str:
        """The id without its mode prefix: the display name, or the e-mail address."""
        return self.id.partition(":")[2] or self.id

    def may_manage(self, owner: str | None) -> bool:
        """Stop, resume, rename, delete: one's own runs; the teacher, every run."""
        return self.teacher or (owner is not None and owner == self.id)


# Whoever works in solo mode, or on the server's command line: all rights.
LOCAL = User("local", teacher=True)


def owner_name(owner: str | None) -> str:
    """How a run's owner is shown: runs from before owners were recorded belong to nobody."""
    return User(owner).name if owner else "nobody (an older run)"


TEACHER_NAME = "teacher"  # a teacher who types no name runs under this one


def class_user(name: str, teacher: bool = False) -> User:
    """A class-mode user from the name they typed (spaces collapsed); ValueError when unusable."""
    name = " ".join(name.split())
    if not name:
        raise ValueError("Type a name first.")
    if len(name) > MAX_USER_NAME_CHARS or not name.isprintable():
        raise ValueError(f"A name is at most {MAX_USER_NAME_CHARS} printable characters.")
    if name.casefold() == TEACHER_NAME and not teacher:  # else a student gets the teacher's unnamed runs
        raise ValueError(f'"{TEACHER_NAME}" is kept for the teacher\'s own runs: type your own name.')
    return User(f"class:{name}", teacher)


def login_user(email: str, teachers: frozenset[str]) -> User:
    email = email.strip().lower()
    return User(f"login:{email}", email in teachers)


def _number(environ: Mapping[str, str], key: str, default: float | None) -> float | None:
    """A limit from the environment: a number, ``none`` for no limit; ``default`` when unset or unreadable."""
    text = environ.get(key, "").strip().lower()
    if text in ("none", "off", "unlimited"):
        return None
    try:
        return float(text) if text else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Policy:
    """The server's rules: its mode and the limits that apply to students (the teacher has none)."""

    mode: Mode = Mode.SOLO
    teacher_passcode: str = ""
    teacher_emails: frozenset[str] = frozenset()
    max_active_runs: int | None = None  # queued or running, per student
    run_budget_bytes: int | None = None  # disk taken by a student's run folders
    data_roots: tuple[Path, ...] | None = None  # None: any path on the server

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, login: bool = False) -> Policy:
        """The policy the environment describes; ``login``: the secrets configure ``st.login``."""
        environ = os.environ if environ is None else environ
        passcode = environ.get("PNEUMO_TEACHER_PASSCODE", "")
        mode = Mode.LOGIN if login else Mode.CLASS if passcode else Mode.SOLO
        if mode == Mode.SOLO:
            return cls()
        runs = _number(environ, "PNEUMO_MAX_RUNS_PER_USER", 2)
        budget = _number(environ, "PNEUMO_USER_RUNS_GB", 2.0)
        roots = environ.get("PNEUMO_DATA_ROOTS", "")
        return cls(
            mode=mode,
            teacher_passcode=passcode,
            teacher_emails=frozenset(e.strip().lower() for e in environ.get("PNEUMO_TEACHER_EMAILS", "").split(",")
                                     if e.strip()),
            max_active_runs=None if runs is None else max(1, int(runs)),
            run_budget_bytes=None if budget is None else int(budget * GB),
            data_roots=tuple(Path(p).expanduser().resolve() for p in roots.split(os.pathsep) if p.strip()),
        )

    def check_path(self, path: str | Path) -> Path:
        """``path`` when this server lets its users read it; Forbidden otherwise, with the same
        answer whether it exists or not (so the check tells nothing about the server's files)."""
        path = Path(path).expanduser()
        if self.data_roots is None:
            return path
        resolved = path.resolve()  # through links and "..", so neither leads out of a root
        if any(resolved.is_relative_to(root) for root in self.data_roots):
            return path
        offered = ", ".join(str(r) for r in self.data_roots)
        raise Forbidden(f"This server only reads files under its data folders ({offered})." if offered else
                        "This server offers no folders of its own (the teacher can list some in PNEUMO_DATA_ROOTS): "
                        "use the synthetic set or PneumoniaMNIST.")

    def redact(self, text: str) -> str:
        """``text`` (a training log, an error) with the server's own folders replaced by short names,
        on a shared server; unchanged in solo mode, where the paths are the user's own."""
        if self.mode == Mode.SOLO:
            return text
        from pneumo.paths import PROJECT_ROOT, cache_dir, runs_dir

        places = {str(runs_dir().resolve()): "<runs>", str(runs_dir()): "<runs>", str(cache_dir()): "<cache>",
                  str(PROJECT_ROOT): "<app>", sys.prefix: "<python>", sys.base_prefix: "<python>",
                  str(Path.home()): "~"}
        for path in sorted(places, key=len, reverse=True):  # the longest first: runs inside the app folder
            text = text.replace(path, places[path])
        return text

    def check_dataset(self, spec: str) -> None:
        """Forbidden when the data set ``spec`` names reads a server path outside the data roots
        (a malformed spec raises the data layer's DatasetError)."""
        from pneumo.data.sources import parse_spec

        location = parse_spec(spec).location
        if location is not None:
            self.check_path(location)

    def check_config(self, config: TrainConfig) -> None:
        """Forbidden when a run's data set or weights file lies outside the data roots."""
        self.check_dataset(config.dataset)
        if config.weights not in ("imagenet", "none"):
            self.check_path(config.weights)
