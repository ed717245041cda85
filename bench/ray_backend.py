"""Bench: what the ray backend costs over local processes, and what two slots buy.

    python bench/ray_backend.py [--runs 4] [--epochs 1] [--size 64]

Starts a real local Ray head with 2 CPUs (tests/rayhead.py), then, in the same run of the script:
(1) one run of the synthetic set, 1 epoch, on each backend: seconds from submit to the first
    epoch written and to done (the Ray job's start-up: packaging the project, the job
    supervisor, the worker's imports);
(2) ``--runs`` such runs submitted at once: on Ray (1 CPU each, 2 at a time) against the local
    queue (PNEUMO_MAX_RUNS=1, one after another): wall time to the last one done.
On a 2-core machine both backends share the same two cores, so (2) measures scheduling, not
more hardware: on a cluster, each node adds its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumo.runs import backends, jobs
from pneumo.runs.store import Run, RunState, RunStore
from pneumo.training.augment import PRESETS
from pneumo.training.config import TrainConfig
from tests.rayhead import ray_head


def _config(args: argparse.Namespace, name: str) -> TrainConfig:
    return TrainConfig(dataset="synthetic", image_size=args.size, epochs=args.epochs, early_stopping=0,
                       augmentation=PRESETS["none"], name=name)


def _wait(runs: list[Run], store: RunStore, first_epoch: dict[str, float], start: float) -> float:
    """Poll as the pages do; note when each run's first epoch appears; return the wall time to all done."""
    while True:
        jobs.schedule(store)
        for run in runs:
            if run.id not in first_epoch and len(run.history()):
                first_epoch[run.id] = time.monotonic() - start
        states = [run.status()["state"] for run in runs]
        if not any(RunState(s).active for s in states):
            failed = [jobs.log_tail(r, 20) for r in runs if r.status()["state"] != RunState.FINISHED]
            if failed:
                raise SystemExit("a run did not finish:\n" + "\n---\n".join(failed))
            return time.monotonic() - start
        time.sleep(0.25)


def _measure(args: argparse.Namespace, backend: backends.Backend, count: int, root: Path) -> tuple[float, float]:
    store = RunStore(root / f"{backend.name}-{count}")
    start, first = time.monotonic(), {}
    runs = [jobs.submit(_config(args, f"bench {i}"), store, backend=backend) for i in range(count)]
    done = _wait(runs, store, first, start)
    return min(first.values()), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    os.environ["PNEUMO_MAX_RUNS"] = "1"  # the local queue: one after another
    with tempfile.TemporaryDirectory() as tmp, ray_head(cpus=2) as address:
        os.environ.setdefault("PNEUMO_CACHE", str(Path(tmp) / "cache"))
        local, ray = backends.LocalBackend(), backends.RayBackend(address)
        os.environ.pop("PNEUMO_MAX_RUNS")
        ray_slots = ray.slots()
        os.environ["PNEUMO_MAX_RUNS"] = "1"
        _measure(args, local, 1, Path(tmp) / "warm")  # fills the image cache; not counted
        rows = []
        for name, backend in (("local", local), ("ray", ray)):
            first, done = _measure(args, backend, 1, Path(tmp))
            rows.append((name, first, done))
        print(f"\n1 run, synthetic at {args.size} px, {args.epochs} epoch(s); Ray head {address}, "
              f"{ray.cluster()}, {ray_slots} slots")
        print(f"{'backend':<8}{'to first epoch (s)':>20}{'to done (s)':>14}")
        for name, first, done in rows:
            print(f"{name:<8}{first:>20.1f}{done:>14.1f}")
        (_, local_first, local_end), (_, ray_first, ray_end) = rows
        print(f"ray overhead: {ray_first - local_first:+.1f} s to first epoch, {ray_end - local_end:+.1f} s to done")
        os.environ.pop("PNEUMO_MAX_RUNS")  # Ray: as many at once as the cluster has room for
        _, ray_done = _measure(args, ray, args.runs, Path(tmp))
        os.environ["PNEUMO_MAX_RUNS"] = "1"
        _, local_done = _measure(args, local, args.runs, Path(tmp))
        print(f"\n{args.runs} runs submitted at once")
        print(f"{'backend':<30}{'wall (s)':>10}{'ratio':>8}")
        print(f"{'local, one after another':<30}{local_done:>10.1f}{1.0:>8.2f}")
        print(f"{f'ray, {ray_slots} at a time':<30}{ray_done:>10.1f}{ray_done / local_done:>8.2f}")


if __name__ == "__main__":
    main()
