"""PneumoniaMNIST (MedMNIST v2, CC BY 4.0): download the .npz straight from Zenodo.

The ``medmnist`` package is not used: it pulls in torch for a single file download.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from pneumo.files import replace_atomically
from pneumo.paths import cache_dir

SIZES = (28, 64, 128, 224)
_URL = "https://zenodo.org/records/10519652/files/pneumoniamnist{suffix}.npz?download=1"
MD5 = {
    28: "28209eda62fecd6e6a2d98b1501bb15f",
    64: "8f4eceb4ccffa70c672198ea285246c6",
    128: "05b46931834c231683c68f40c47b2971",
    224: "d6a3c71de1b945ea11211b03746c1fe1",
}


class DownloadError(RuntimeError):
    """The file could not be fetched or failed its checksum; the message says what to do."""


def url(size: int) -> str:
    return _URL.format(suffix="" if size == 28 else f"_{size}")


def local_path(size: int) -> Path:
    return cache_dir() / "downloads" / f"pneumoniamnist_{size}.npz"


def fetch(size: int, timeout: float = 30.0) -> Path:
    """Return the cached .npz for ``size``, downloading and MD5-checking it on first use."""
    if size not in SIZES:
        raise ValueError(f"PneumoniaMNIST comes in sizes {SIZES}, not {size}")
    target = local_path(size)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    def download(part: Path) -> None:
        """Into ``part``, checked against the published MD5 before it may take the target's place."""
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(url(size), timeout=timeout) as response, open(part, "wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise DownloadError(
                f"Could not download PneumoniaMNIST {size} px ({exc}). Without internet, download "
                f"{url(size)} elsewhere and give the path of the .npz file instead."
            ) from exc
        if digest.hexdigest() != MD5[size]:
            raise DownloadError(
                f"PneumoniaMNIST {size} px download is corrupt (MD5 {digest.hexdigest()}, expected {MD5[size]})."
            )

    replace_atomically(target, download)
    return target
