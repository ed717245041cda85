"""Bench: warm Predict-page latency, probability + saliency, for the default CNN and ResNet50 at 224.

    python bench/predict_speed.py [REPEATS] [--grad-cam-only]

Builds each model as training would (weights do not change the cost: ResNet50 uses
weights=None, as offline), wraps it in a Predictor as the page does, warms it up with one
call of everything, then times REPEATS calls of each and prints the median. The ratio column
is each figure over the bare probability of the same model in the same run. The last row is
what the page does for a first look at a film: the probability, Grad-CAM, and its
deletion/insertion score with the random map's it is compared with.
Goals on a 2-core CPU: probability + Grad-CAM + its deletion/insertion score <= 1 s for the
CNN, <= 4 s for ResNet50 at 224.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from pneumo.explain import faithfulness
from pneumo.explain.predictor import Predictor
from pneumo.explain.saliency import METHODS, saliency
from pneumo.training import models
from pneumo.training.config import TrainConfig

GOALS = {"cnn": 1.0, "resnet50": 4.0}


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    numbers = [int(a) for a in sys.argv[1:] if a.isdigit()]
    repeats = numbers[0] if numbers else 5
    full = "--grad-cam-only" not in sys.argv
    film = np.random.default_rng(0).integers(0, 256, (1024, 900), dtype=np.uint8)  # a decoded upload
    print(f"{'model':<22}{'what':<30}{'median s':>10}{'ratio':>8}{'goal':>8}")
    for config in (TrainConfig(), TrainConfig(model="resnet50", weights="none", image_size=224)):
        predictor = Predictor(models.build(config))
        label = f"{config.model} @ {config.image_size}"
        predictor.probability(film)
        for method in METHODS if full else ("Grad-CAM",):
            saliency(predictor, film, method)
        base = median_seconds(lambda p=predictor: p.probability(film), repeats)
        print(f"{label:<22}{'probability':<30}{base:>10.3f}{1:>8.1f}{'':>8}")
        for method in METHODS if full else ("Grad-CAM",):
            seconds = median_seconds(lambda p=predictor, m=method: (p.probability(film), saliency(p, film, m)),
                                     repeats)
            print(f"{label:<22}{'probability + ' + method:<30}{seconds:>10.3f}{seconds / base:>8.1f}{'':>8}")

        def first_look(p: Predictor = predictor) -> None:
            p.probability(film)
            faithfulness.faithfulness(p.probabilities, p.as_seen(film), saliency(p, film, "Grad-CAM"),
                                      faithfulness.budget_for(p.model.count_params()))

        first_look()
        seconds = median_seconds(first_look, repeats)
        goal = f"<= {GOALS[config.model]:.0f}"
        print(f"{label:<22}{'+ Grad-CAM + deletion/insertion':<30}{seconds:>10.3f}{seconds / base:>8.1f}{goal:>8}")


if __name__ == "__main__":
    main()
