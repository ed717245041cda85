"""Bench: cold scan + cache build of the real Kermany folder, and a warm reload.

    python bench/dataset_cache.py [FOLDER] [--size 224]

Prints a table. The baseline, measured in the same run, is the naive way: open every JPEG
with PIL at full size, convert and resize, one at a time, no cache.
Goals on a 2-core machine: cold <= 60 s, warm <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumo.data import cache
from pneumo.data.sources import FolderSource

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"


def naive_decode(source: FolderSource, size: int) -> float:
    start = time.perf_counter()
    for _, _, _, path in source.listing().files:
        with Image.open(path) as img:
            img.convert("L").resize((size, size), Image.BILINEAR)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"no data at {args.folder}")
    source = FolderSource(args.folder)
    n = len(source.listing().files)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PNEUMO_CACHE"] = tmp
        baseline = naive_decode(source, args.size)
        start = time.perf_counter()
        cold_set = cache.load(source, args.size)
        cold = time.perf_counter() - start
        warm_times = []
        for _ in range(3):
            start = time.perf_counter()
            warm_set = cache.load(source, args.size)
            warm_set.images[-1].sum()  # touch the data so a lazy load is not free
            warm_times.append(time.perf_counter() - start)
        warm = min(warm_times)
    assert len(warm_set.records) == len(cold_set.records)
    rows = [
        ("naive PIL decode, no cache (baseline)", baseline, 1.0),
        ("cold: scan + decode + write cache", cold, baseline / cold),
        ("warm: reload from cache (best of 3)", warm, baseline / warm),
    ]
    print(f"{n:,} files in {args.folder}, {args.size} px, {os.cpu_count()} CPU(s)")
    print(f"{'step':<42}{'seconds':>10}{'images/s':>12}{'x baseline':>12}")
    for name, seconds, ratio in rows:
        print(f"{name:<42}{seconds:>10.2f}{n / seconds:>12,.0f}{ratio:>12.1f}")
    verdict = {True: "met", False: "MISSED"}
    print(f"goals: cold <= 60 s ({verdict[cold <= 60]}), warm <= 2 s ({verdict[warm <= 2]})")


if __name__ == "__main__":
    main()
