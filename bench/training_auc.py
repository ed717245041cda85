"""Bench: what a training set-up reaches on the real Kermany test split, and how long it takes,
in seed-epochs.

    python bench/training_auc.py [FOLDER] [--seeds 0 1 2] [extra `python -m pneumo train` options, as --option=value]

Measures the seed-style set-up's speed on this machine (``training_speed.seed_epoch``: one
seed-epoch is the time it takes for one pass over the 5,216 train films) before and after the
runs, and takes the mean as the unit; in between it trains the set-up
(TrainConfig's defaults, or the options given, e.g. ``--preset demo``) once per seed with the real
engine, in the foreground, into a temporary run store, and scores predictions.csv with
scikit-learn: test AUC and accuracy at 0.5 on the official test split (624 films). Wall time
counts from the process start to predictions written, and is given in seed-epochs, a unit that
travels between machines that differ threefold in speed.
Goals: the default reaches a mean test AUC >= 0.975 over 3 seeds within 1 seed-epoch; the demo
preset >= 0.95 within 0.25.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.training_speed import seed_epoch
from pneumo.runs.store import RunStore

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
ROOT = Path(__file__).resolve().parents[1]


def train_once(folder: Path, seed: int, options: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "PNEUMO_RUNS": runs, "TF_CPP_MIN_LOG_LEVEL": "2"}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pneumo", "train", "--dataset", str(folder), "--seed", str(seed),
                        *options], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        (run,) = RunStore(Path(runs)).runs()
        test = run.predictions().query("split == 'test'")
        epochs = len(run.history())
    return {"seed": seed, "auc": roc_auc_score(test["label"], test["prob"]),
            "accuracy": ((test["prob"] >= 0.5) == test["label"]).mean(), "seconds": seconds, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seed-epoch", type=float, help="seconds of a seed-epoch measured before (exploring "
                                                          "settings); the README's figures measure it in the run")
    args, options = parser.parse_known_args()
    if not args.folder.is_dir():
        sys.exit(f"no data at {args.folder}")
    before = args.seed_epoch or seed_epoch(args.folder)
    print(f"one seed-epoch on this machine: {before:.0f} s; options: {' '.join(options) or 'defaults'}", flush=True)
    results = []
    for seed in args.seeds:
        results.append(train_once(args.folder, seed, options))
        print(f"seed {seed}: test AUC {results[-1]['auc']:.4f} in {results[-1]['seconds']:.0f} s", flush=True)
    # This machine's speed drifts over minutes: the unit is the mean of a measure before and after.
    after = args.seed_epoch or seed_epoch(args.folder)
    unit = (before + after) / 2
    print(f"seed-epoch after the runs: {after:.0f} s; the unit: their mean, {unit:.0f} s")
    print(f"{'seed':>4}{'test AUC':>10}{'acc@0.5':>9}{'epochs':>8}{'wall s':>8}{'seed-epochs':>13}")
    for r in results:
        print(f"{r['seed']:>4}{r['auc']:>10.4f}{r['accuracy']:>9.3f}{r['epochs']:>8}{r['seconds']:>8.0f}"
              f"{r['seconds'] / unit:>13.2f}")
    if len(results) > 1:
        aucs, times = [r["auc"] for r in results], [r["seconds"] / unit for r in results]
        print(f"mean{statistics.mean(aucs):>10.4f} ± {statistics.stdev(aucs):.4f} sd; "
              f"{statistics.mean(times):.2f} seed-epochs on average, {max(times):.2f} at most")


if __name__ == "__main__":
    main()
