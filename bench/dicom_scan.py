"""Bench: how fast an RSNA-layout folder of DICOMs is scanned into the cache, and what the full set would take.

    python bench/dicom_scan.py [SAMPLE] [--files 3000] [--size 224]

Why: the full RSNA Pneumonia Detection Challenge set is 26,684 DICOMs (1024 x 1024, JPEG Baseline,
about 4 GB) and only 16 of them ship with the project (``../shared/data/rsna_sample``), so the
scan of a real download cannot be timed here. This bench times what can be: the 16 real files,
then a generated RSNA-layout folder of FILES DICOMs (byte copies of the 16 under new patientIds,
with their official label and class rows), scanned by ``cache.load(RsnaSource(...))`` cold (a fresh
PNEUMO_CACHE) at FILES / 3 and at FILES, and warm (reloaded from that cache, best of 3) at FILES.
Each load runs in a child process of its own, so the peak memory printed is that load's. The decoded images go
straight into a memory-mapped file, so the process's own (anonymous) memory must not grow by
anything near 224 x 224 bytes per film; its RSS does, as RSS counts the pages of that file that
are resident (page cache, written back and reclaimable by the kernel). The full set is
extrapolated linearly from each row's time per film ("full cold", "full warm"). Cold loads of
FILES with the build's thread pool cut to one worker say whether the threads help; the pool's and
the one worker's loads of FILES alternate, twice, and the faster of each is kept ("cores": CPU
time over wall time, all threads).

Baseline, same run: only reading the bytes of the FILES files, one after another, no decode
("x read": a row's time per film over the baseline's). The files were just written, so they are
read from the OS page cache, as in the other benches; 4 GB from a disk would add its read time.
A second table splits one film's read + decode + resize into its stages (the fastest of 5 runs
per film).
Goals on a 2-core machine, full set: cold <= 10 min, warm <= 5 s.

The machine is shared: timing starts once the 1-minute load average is below 3 (polled every 30 s,
for up to 20 min; past that it measures anyway, and the header says so).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumo.data import cache, labelled, radiograph
from pneumo.data.labelled import RSNA_HEADER, RsnaSource

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna_sample"
FULL_SET = 26_684
GOAL_COLD_MIN = 10.0
GOAL_WARM_S = 5.0
QUIET_LOAD, POLL_S, PATIENCE_S = 3.0, 30, 20 * 60
REPEATS = 5
IMAGES, LABELS, CLASSES = "stage_2_train_images", "stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"


@dataclass
class Load:
    """One cache.load, timed in a child process of its own."""

    files: int
    seconds: float
    cores: float  # CPU seconds (all threads) over wall seconds: how many cores the load kept busy
    peak_rss_mb: float  # ru_maxrss: every page the process had resident, the memory map's included
    peak_anon_mb: float  # RssAnon sampled every 10 ms: memory that is the process's own (not file pages)


def wait_for_quiet() -> str:
    """Wait until the 1-minute load average is below QUIET_LOAD; say how it went."""
    start = time.monotonic()
    while os.getloadavg()[0] >= QUIET_LOAD and time.monotonic() - start < PATIENCE_S:
        time.sleep(POLL_S)
    load, waited = os.getloadavg()[0], (time.monotonic() - start) / 60
    if load >= QUIET_LOAD:
        return f"load {load:.1f} after waiting {waited:.0f} min: MEASURED ON A BUSY MACHINE"
    return f"load {load:.1f} at start (waited {waited:.1f} min)"


def make_rsna_set(sample: Path, root: Path, n: int) -> None:
    """``root`` in the RSNA layout with ``n`` byte copies of the sample's DICOMs under new patientIds,
    each with its source patient's official label rows (and class rows)."""
    sources = sorted((sample / IMAGES).glob("*.dcm"))
    labels = _rows_by_patient(sample / LABELS, {p.stem for p in sources})
    classes = _rows_by_patient(sample / CLASSES, {p.stem for p in sources})
    (root / IMAGES).mkdir(parents=True)
    with open(root / LABELS, "w", newline="") as lf, open(root / CLASSES, "w", newline="") as cf:
        label_out, class_out = csv.writer(lf), csv.writer(cf)
        label_out.writerow(RSNA_HEADER)
        class_out.writerow(["patientId", "class"])
        for i in range(n):
            source = sources[i % len(sources)]
            patient = f"{i:08x}{source.stem[8:]}"  # a patientId of the same shape, unique per copy
            shutil.copyfile(source, root / IMAGES / f"{patient}.dcm")
            label_out.writerows([patient, *row[1:]] for row in labels[source.stem])
            class_out.writerows([patient, *row[1:]] for row in classes[source.stem])


def _rows_by_patient(path: Path, patients: set[str]) -> dict[str, list[list[str]]]:
    rows: dict[str, list[list[str]]] = {p: [] for p in patients}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.reader(f):
            if row and row[0] in rows:
                rows[row[0]].append(row)
    return rows


def read_bytes_only(paths: list[Path]) -> float:
    """The baseline: every file's bytes read, one after another, nothing decoded."""
    start = time.perf_counter()
    for path in paths:
        path.read_bytes()
    return time.perf_counter() - start


def _peak_anon(stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.01):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]))


def _one_worker(**_: object) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1)


def _timed_load(root: str, cache_root: str, size: int, repeats: int, one_worker: bool) -> Load:
    """In a fresh child process: best of ``repeats`` cache.load of ``root`` (a warm load when
    ``cache_root`` holds it already), its data touched, with this process's peak memory."""
    os.environ["PNEUMO_CACHE"] = cache_root
    if one_worker:
        labelled.ThreadPoolExecutor = _one_worker  # this child only: the build's pool, one thread
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_peak_anon, args=(stop, peak), daemon=True)
    sampler.start()
    times, cpu = [], []
    for _ in range(repeats):
        cpu.append(_cpu_seconds())
        start = time.perf_counter()
        image_set = cache.load(RsnaSource(Path(root)), size)
        image_set.images[-1].sum()  # touch the data so a lazy load is not free
        times.append(time.perf_counter() - start)
        cpu[-1] = _cpu_seconds() - cpu[-1]
    stop.set()
    sampler.join()
    fastest = times.index(min(times))
    return Load(len(image_set.records), times[fastest], cpu[fastest] / times[fastest],
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, peak[0] / 1024)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_child(root: Path, cache_root: Path, size: int, repeats: int = 1, one_worker: bool = False) -> Load:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_timed_load, str(root), str(cache_root), size, repeats, one_worker).result()


def cold_and_warm(root: Path, size: int) -> tuple[Load, Load]:
    with tempfile.TemporaryDirectory(prefix="pneumo-cache-") as cache_root:
        cold = in_child(root, Path(cache_root), size)
        warm = in_child(root, Path(cache_root), size, repeats=3)
    return cold, warm


def cold_load(root: Path, size: int, one_worker: bool = False) -> Load:
    with tempfile.TemporaryDirectory(prefix="pneumo-cache-") as cache_root:
        return in_child(root, Path(cache_root), size, one_worker=one_worker)


def sample_cold_load(sample: Path, size: int) -> float:
    """Best of REPEATS cold cache.load of the sample, each into a fresh cache folder (this process)."""
    times = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory(prefix="pneumo-cache-") as cache_root:
            os.environ["PNEUMO_CACHE"] = cache_root
            start = time.perf_counter()
            cache.load(RsnaSource(sample), size)
            times.append(time.perf_counter() - start)
    return min(times)


STAGES = ("read bytes", "pydicom parse (dcmread)", "JPEG decode, full size (ds.pixel_array)",
          "rest of radiograph.read (LUTs, min-max stretch to uint8)", "resize to size (PIL bilinear)",
          "all of it, as RsnaSource.build does")


def film_stages(path: Path, size: int) -> list[float]:
    """Seconds for each of STAGES on one film, one thread, each the fastest of REPEATS runs. Parse
    and decode are timed apart, just before radiograph.read (which does both again), to split it."""
    runs = []
    for _ in range(REPEATS):
        clock = [time.perf_counter()]
        data = path.read_bytes()
        clock.append(time.perf_counter())
        ds = pydicom.dcmread(io.BytesIO(data))
        clock.append(time.perf_counter())
        len(ds.pixel_array)  # decodes the frame (on first access)
        clock.append(time.perf_counter())
        pixels = radiograph.read(data, path.name).pixels
        clock.append(time.perf_counter())
        Image.fromarray(pixels).resize((size, size), Image.BILINEAR, reducing_gap=2.0)
        clock.append(time.perf_counter())
        runs.append(np.diff(clock))
    read, parse, decode, whole, resize = np.min(runs, axis=0).tolist()
    return [read, parse, decode, whole - parse - decode, resize, read + whole + resize]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sample", nargs="?", type=Path, default=DEFAULT, help="the RSNA sample folder")
    parser.add_argument("--files", type=int, default=3000, help="DICOMs in the generated set")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if not (args.sample / IMAGES).is_dir():
        sys.exit(f"no RSNA sample at {args.sample}")
    sample_paths = sorted((args.sample / IMAGES).glob("*.dcm"))
    third = max(1, args.files // 3)
    with tempfile.TemporaryDirectory(prefix="pneumo-dicom-scan-") as tmp:
        full, small = Path(tmp) / "full", Path(tmp) / "third"
        make_rsna_set(args.sample, full, args.files)
        make_rsna_set(args.sample, small, third)
        os.sync()  # the copies' writeback must not land in a timed load
        quiet = wait_for_quiet()
        per_film = dict(zip(STAGES, np.mean([film_stages(p, args.size) for p in sample_paths], axis=0), strict=True))
        sample_cold = sample_cold_load(args.sample, args.size)
        baseline = read_bytes_only(sorted((full / IMAGES).iterdir()))
        small_cold = cold_load(small, args.size)
        pooled, serials = [], []
        for _ in range(2):  # alternated: a neighbour's burst should not fall on one side only
            pooled.append(cold_and_warm(full, args.size))
            serials.append(cold_load(full, args.size, one_worker=True))
        big_cold, big_warm = min(pooled, key=lambda loads: loads[0].seconds)
        serial = min(serials, key=lambda load: load.seconds)
        end_load = os.getloadavg()[0]

    cpus = os.cpu_count()
    n, read_per_file = args.files, baseline / args.files

    def row(name: str, files: int, seconds: float, cold: Load | None = None, warm: Load | None = None,
            extrapolate: bool = True) -> str:
        cores = f"{cold.cores:.2f}" if cold else ""
        rss, anon = (f"{cold.peak_rss_mb:,.0f}", f"{cold.peak_anon_mb:,.0f}") if cold else ("", "")
        warm_s, full_warm = (f"{warm.seconds:.2f}", f"{FULL_SET * warm.seconds / warm.files:.1f}") if warm else ("", "")
        full_cold = f"{FULL_SET * seconds / files / 60:.1f}" if extrapolate else ""
        return (f"{name:<34}{files:>7,}{seconds:>9.2f}{files / seconds:>9,.0f}{seconds / files / read_per_file:>8.0f}"
                f"{cores:>7}{warm_s:>8}{rss:>10}{anon:>11}{full_cold:>11}{full_warm:>11}").rstrip()

    print(f"RSNA-layout scan at {args.size} px, {cpus} CPU(s), {quiet}, load {end_load:.1f} at the end")
    print(f"{'':<34}{'files':>7}{'cold s':>9}{'files/s':>9}{'x read':>8}{'cores':>7}{'warm s':>8}{'peak RSS':>10}"
          f"{'of it anon':>11}{'full cold':>11}{'full warm':>11}")
    print(f"{'':<34}{'':>7}{'':>9}{'':>9}{'':>8}{'':>7}{'':>8}{'MB':>10}{'MB':>11}{'min':>11}{'s':>11}")
    print(row("read bytes only (baseline)", n, baseline))
    # 16 films cannot outweigh the fixed cost (30,227 label rows read twice): no extrapolation from them
    print(row(f"sample cache.load (best of {REPEATS})", len(sample_paths), sample_cold, extrapolate=False))
    print(row("generated set, cache.load", small_cold.files, small_cold.seconds, small_cold))
    print(row("generated set, cache.load", big_cold.files, big_cold.seconds, big_cold, big_warm))
    print(row("generated set, one worker thread", serial.files, serial.seconds, serial))

    single = per_film[STAGES[-1]]
    print(f"\nOne film, one thread (mean of the {len(sample_paths)} real films, fastest of {REPEATS} runs each):")
    print(f"{'stage':<58}{'ms/film':>9}{'share':>8}")
    for name, seconds in per_film.items():
        print(f"{name:<58}{seconds * 1000:>9.1f}{seconds / single:>8.0%}")

    grown = big_cold.peak_rss_mb - small_cold.peak_rss_mb
    held = (big_cold.files - small_cold.files) * args.size**2 / 2**20
    grown_anon = big_cold.peak_anon_mb - small_cold.peak_anon_mb
    workers = min(8, (cpus or 1) + 1)  # as RsnaSource.build sizes its pool
    print(f"\nthread pool, {big_cold.files:,} films: {workers} workers {big_cold.seconds:.1f} s, one worker "
          f"{serial.seconds:.1f} s ({serial.seconds / big_cold.seconds:.2f}x faster with the pool on {cpus} CPU(s))")
    print(f"peak memory, {small_cold.files:,} -> {big_cold.files:,} films: RSS {grown:+,.0f} MB, anonymous "
          f"{grown_anon:+,.0f} MB; the images themselves would be {held:+,.0f} MB if held in RAM")
    full_cold = FULL_SET * big_cold.seconds / big_cold.files / 60
    full_warm = FULL_SET * big_warm.seconds / big_warm.files
    verdict = {True: "met", False: "MISSED"}
    print(f"goals, {FULL_SET:,} films extrapolated from {big_cold.files:,}: cold {full_cold:.1f} min <= "
          f"{GOAL_COLD_MIN:.0f} min ({verdict[full_cold <= GOAL_COLD_MIN]}), warm {full_warm:.1f} s <= "
          f"{GOAL_WARM_S:.0f} s ({verdict[full_warm <= GOAL_WARM_S]})")


if __name__ == "__main__":
    main()
