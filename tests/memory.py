"""What a process holds of its own, for the tests and benches that bound memory (Linux only)."""

from __future__ import annotations

from pathlib import Path

STATUS = Path("/proc/self/status")


def anonymous_bytes() -> int:
    """Anonymous resident memory (RssAnon): not pages of mapped files, which the kernel may drop."""
    return int(next(line.split()[1] for line in STATUS.read_text().splitlines() if line.startswith("RssAnon:"))) * 1024
