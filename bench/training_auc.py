"""Bench: what the default CNN reaches on the real Kermany test split, and how long it takes.

    python bench/training_auc.py [FOLDER] [--epochs N] [extra `python -m pneumo train` options]

Trains TrainConfig's defaults (or the options given) with the real engine, in the foreground,
into a temporary run store, then scores predictions.csv with scikit-learn: test AUC and
accuracy at 0.5, per the official test split (624 images), with wall-clock time.
Goal on a 2-core CPU: test AUC >= 0.97 within 15 minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pneumo.runs.store import RunStore

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    args = sys.argv[1:]
    folder = Path(args.pop(0)) if args and not args[0].startswith("-") else DEFAULT
    if not folder.is_dir():
        sys.exit(f"no data at {folder}")
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "PNEUMO_RUNS": runs, "TF_CPP_MIN_LOG_LEVEL": "2"}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pneumo", "train", "--dataset", str(folder), *args], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        (run,) = RunStore(Path(runs)).runs()
        predictions, history = run.predictions(), run.history()
    print(f"{'split':<8}{'images':>8}{'AUC':>8}{'accuracy@0.5':>14}")
    for split, frame in predictions.groupby("split"):
        accuracy = ((frame["prob"] >= 0.5) == frame["label"]).mean()
        print(f"{split:<8}{len(frame):>8}{roc_auc_score(frame['label'], frame['prob']):>8.4f}{accuracy:>14.3f}")
    print(f"{len(history)} epochs, best val AUC {history['val_auc'].max():.4f}, wall time {seconds / 60:.1f} min "
          f"(options: {' '.join(args) or 'defaults'})")


if __name__ == "__main__":
    main()
