"""Files that readers see whole or not at all: written beside their place, then renamed over it.

Many browser sessions read what one training process writes; a reader must never meet half a
file, and a failed or killed write must leave the old file as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills a temporary file in ``path``'s folder, which then replaces ``path`` in one rename."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str)))
