"""Where pneumo keeps files, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Decoded image arrays and downloads: derived data, safe to delete (``PNEUMO_CACHE``)."""
    return Path(os.environ.get("PNEUMO_CACHE") or Path.home() / ".cache" / "pneumo")


def runs_dir() -> Path:
    """Training runs and their models (``PNEUMO_RUNS``, default ``models/``)."""
    return Path(os.environ.get("PNEUMO_RUNS") or PROJECT_ROOT / "models")


def default_dataset_spec() -> str:
    """The data set the app opens on: ``PNEUMO_DATA`` lets a teacher preset it for a class."""
    return os.environ.get("PNEUMO_DATA", "").strip() or "synthetic"
