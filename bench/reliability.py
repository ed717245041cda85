"""Bench: the dashboard under faults and load, in figures.

    python bench/reliability.py [FUZZ_INPUTS]

1. Fuzzed uploads: FUZZ_INPUTS (default 1,000) mutated JPEG/PNG/DICOM files and random bytes
   through the Predict page's path (read, then the model's probability): how many were read,
   how many refused with a message, how many escaped as another exception (must be 0).
2. Killed runs: three real training processes SIGKILLed mid-epoch; seconds until each is
   marked failed (polling as the Train page does, every 0.2 s), history rows kept.
3. Concurrent starts: four processes submit a run at the same moment with one training slot:
   runs created, runs started more than once, runs that overlapped in time (must be 1, 0, 0).
4. Concurrent predictions: eight threads share one model as browser sessions do: answers that
   differ from the sequential ones (must be 0), and throughput against one thread.
Everything runs in a temporary cache and run store.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np

from pneumo.data import radiograph
from pneumo.data.imaging import ImageDecodeError
from pneumo.explain.predictor import Predictor
from pneumo.runs import jobs
from pneumo.runs.store import RunStore
from pneumo.training import models
from pneumo.training.augment import PRESETS
from pneumo.training.config import TrainConfig
from tests import films

TINY = TrainConfig(dataset="synthetic", image_size=64, cnn_filters=8, cnn_blocks=3, epochs=3, early_stopping=0,
                   augmentation=PRESETS["none"])


def mutate(rng: np.random.Generator, seeds: list[bytes]) -> bytes:
    data = bytearray(seeds[rng.integers(len(seeds))])
    for _ in range(rng.integers(1, 5)):
        kind, at = rng.integers(6), int(rng.integers(max(1, len(data))))
        if kind == 0 and data:
            data[at] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            data = data[:at]
        elif kind == 2:
            data[at:at] = rng.bytes(int(rng.integers(1, 64)))
        elif kind == 3:
            data[at:at + 8] = bytes(len(data[at:at + 8]))
        elif kind == 4:
            data[at:at + 4] = b"\xff\xff\xff\x7f"[: len(data[at:at + 4])]
        else:
            data = bytearray(rng.bytes(int(rng.integers(0, 512))))
    return bytes(data)


def fuzz(n: int, predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    seeds = list(films.good_files().values())
    read = refused = escaped = 0
    slowest = 0.0
    for _ in range(n):
        data = mutate(rng, seeds)
        start = time.perf_counter()
        try:
            predictor.probability(radiograph.read(data, "upload.png").pixels)
            read += 1
        except ImageDecodeError:
            refused += 1
        except Exception as exc:  # noqa: BLE001 - this is what the bench counts
            escaped += 1
            print(f"  escaped: {type(exc).__name__}: {exc}")
        slowest = max(slowest, time.perf_counter() - start)
    print(f"{'fuzzed uploads':<28}{n:>8} inputs: {read} read, {refused} refused with a message, "
          f"{escaped} unhandled; slowest {slowest * 1000:.0f} ms")


def _wait(predicate, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError
        time.sleep(0.05)


def mid_epoch(run) -> bool:
    batches, history = run.batches(), run.history()
    if len(history) < 1 or batches.empty:
        return False
    last = batches.iloc[-1]
    return int(last["epoch"]) > len(history) and 8 <= int(last["batch"]) <= 30


def kills(store: RunStore, times: int = 3) -> None:
    seconds, kept = [], []
    for _ in range(times):
        run = jobs.submit(TINY.with_(epochs=20), store)
        _wait(lambda r=run: mid_epoch(r))
        rows = len(run.history())
        os.kill(run.status()["pid"], signal.SIGKILL)
        killed = time.monotonic()
        while run.status()["state"] != "failed":
            jobs.reconcile(store)
            time.sleep(0.2)
        seconds.append(time.monotonic() - killed)
        kept.append(len(run.history()) == rows)
    print(f"{'killed runs':<28}{times:>8} SIGKILLs mid-epoch: marked failed after "
          f"{', '.join(f'{s:.1f}' for s in seconds)} s (goal < 5); history intact {sum(kept)}/{times}")


def _submit_at(barrier, runs_root: str) -> None:
    barrier.wait()
    jobs.submit(TINY.with_(epochs=1), RunStore(Path(runs_root)))


def concurrent_starts(store: RunStore, n: int = 4) -> None:
    before = {r.id for r in store.runs()}
    barrier = multiprocessing.Barrier(n)
    processes = [multiprocessing.Process(target=_submit_at, args=(barrier, str(store.root))) for _ in range(n)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    new = [r for r in store.runs() if r.id not in before]
    _wait(lambda: all(r.status()["state"] in ("finished", "failed") for r in new), timeout=600)
    spans = sorted((r.status()["started"], r.status()["ended"]) for r in new)
    overlaps = sum(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    twice = sum(r.status().get("resumed", 0) > 0 or len(r.history()) != 1 for r in new)
    print(f"{'concurrent starts':<28}{n:>8} processes at once: {len(new)} runs created, "
          f"{sum(r.status()['state'] == 'finished' for r in new)} finished, {twice} started twice, "
          f"{overlaps} overlapping (1 slot)")


def concurrent_predictions(predictor: Predictor, threads: int = 8, calls: int = 25) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (300, 280), dtype=np.uint8) for _ in range(16)]
    expected = [predictor.probability(img) for img in images]
    start = time.perf_counter()
    for k in range(calls):
        predictor.probability(images[k % 16])
    sequential = calls / (time.perf_counter() - start)
    wrong: list[int] = []

    def session(t: int) -> None:
        for k in range(calls):
            i = (t + k) % 16
            if abs(predictor.configured("none").probability(images[i]) - expected[i]) > 1e-6:
                wrong.append(i)

    workers = [threading.Thread(target=session, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rate = threads * calls / (time.perf_counter() - start)
    print(f"{'concurrent predictions':<28}{threads:>8} threads x {calls}: {len(wrong)} wrong answers; "
          f"{rate:.0f} predictions/s vs {sequential:.0f}/s on one thread (ratio {rate / sequential:.2f})")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    temp = tempfile.mkdtemp(prefix="pneumo-reliability-")  # read at call time, inherited by workers
    os.environ.update(PNEUMO_CACHE=f"{temp}/cache", PNEUMO_RUNS=f"{temp}/runs")
    predictor = Predictor(models.build(TrainConfig()))
    fuzz(n, predictor)
    concurrent_predictions(predictor)
    store = RunStore()
    kills(store)
    concurrent_starts(store)


if __name__ == "__main__":
    main()
