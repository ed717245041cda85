"""The class board: every run ranked by test AUC, beside published results on the same films.

An AUC means something next to another only when both were scored on the same test films. The
published results below were all scored on the official Kermany test split (624 films, 390 with
pneumonia; PneumoniaMNIST's test split is the same films at 28 px), so a run joins the ranking
only when its test split is that one; every other run is kept apart with the reason. Runs with
the same settings but other seeds are pooled into one row (mean ± sd), so a class sees how much
of a difference is luck; only finished runs, each seed once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pneumo.data.sources import spec_kind
from pneumo.evaluation import metrics
from pneumo.evaluation.evaluate import RESAMPLES, on_split
from pneumo.runs import monitoring
from pneumo.runs.jobs import SEED_SUFFIX
from pneumo.runs.store import DEFAULT_THRESHOLD, Run

OFFICIAL_TEST = (624, 390)  # films, of which pneumonia: Kermany's test split (and PneumoniaMNIST's)
# What a board row says of how a run was trained: the runs table's columns (monitoring.summary).
TRAINED = ("data set", "model", "image size", "epochs", "augmentation", "unfreeze", "owner", "device")


@dataclass(frozen=True)
class Reference:
    """A published result on the official Kermany test films."""

    name: str
    model: str
    image_size: int | None
    images: str
    auc: float
    accuracy: float
    sensitivity: float | None
    specificity: float | None
    citation: str
    link: str


_KERMANY = ("Kermany DS, Goldbaum M, Cai W, et al. Identifying medical diagnoses and treatable diseases by "
            "image-based deep learning. Cell 2018;172(5):1122-1131.")
_MEDMNIST = ("Yang J, Shi R, Wei D, et al. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D "
             "biomedical image classification. Scientific Data 2023;10:41.")
REFERENCES = (
    Reference("Kermany et al. 2018: InceptionV3 transfer learning", "InceptionV3", None,
              "Kermany test split, full-size films",
              0.968, 0.928, 0.932, 0.901, _KERMANY, "https://doi.org/10.1016/j.cell.2018.02.010"),
    Reference("MedMNIST v2: ResNet-50 (224)", "ResNet-50", 224, "the same 624 films at 28 px, enlarged to 224",
              0.962, 0.884, None, None, _MEDMNIST, "https://doi.org/10.1038/s41597-022-01721-8"),
    Reference("MedMNIST v2: Google AutoML Vision", "AutoML Vision", 28, "the same 624 films at 28 px",
              0.991, 0.946, None, None, _MEDMNIST, "https://doi.org/10.1038/s41597-022-01721-8"),
)


@dataclass(frozen=True)
class TestSet:
    """The films a run was tested on: runs with the same key scored the same films, image by image."""

    key: str
    family: str  # where ids come from: ids name the same film only within one family
    films: int
    pneumonia: int
    reason: str | None  # why these are not the official Kermany test films; None when they are

    @property
    def official(self) -> bool:
        return self.reason is None

    def comparable(self, other: TestSet) -> bool:
        """Same films: the same test images, or both the official Kermany films (a folder of them
        and PneumoniaMNIST name them differently, so they compare by AUC but not image by image)."""
        return self.key == other.key or (self.official and other.official)


def test_set(run: Run, predictions: pd.DataFrame, split: str = "test") -> TestSet:
    """The films ``run`` was scored on in ``split``; only a test split can be the official one."""
    spec = run.config().dataset
    kind = spec_kind(spec)
    scored = on_split(predictions, split)
    films, pneumonia = len(scored), int(scored["label"].sum())
    family = spec.strip() if kind == "synthetic" else kind  # each synthetic seed draws other films
    pairs = sorted(zip(scored["id"].astype(str), scored["label"].astype(int), strict=True))
    key = hashlib.sha1(json.dumps([family, pairs]).encode()).hexdigest()[:16]
    if split != "test":
        reason = f"{split} films, not a test split"
    elif kind == "synthetic":
        reason = "synthetic images (drawn by a program, not real films)"
    elif _carved(run):
        reason = "test films carved from its data set by pneumo, not the official split"
    elif (films, pneumonia) != OFFICIAL_TEST:
        reason = (f"{films:,} test films ({pneumonia:,} pneumonia), not the official "  # whole in its column at 1024
                  f"{OFFICIAL_TEST[0]} ({OFFICIAL_TEST[1]})")
    else:
        reason = None
    return TestSet(key, family, films, pneumonia, reason)


def _carved(run: Run) -> bool:
    try:
        return json.loads(run.file("environment.json").read_text()).get("split") != "the data set's own"
    except (OSError, ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class Result:
    """One run on its test split at its chosen threshold, and what it was."""

    run: Run
    test: TestSet
    auc: float
    auc_interval: tuple[float, float]
    threshold: float
    threshold_chosen: bool  # False: nobody chose one, DEFAULT_THRESHOLD is used
    values: dict[str, float]  # sensitivity, specificity, accuracy ...
    row: dict  # what was trained: data set, model, size, epochs, augmentation ... (for the table)
    seed: int
    experiment: str | None  # the same for runs that repeat one another; None: not finished, a repeat of none


def result(run: Run, predictions: pd.DataFrame) -> Result | None:
    """A run's board entry; None when it has no test predictions of both classes."""
    test = on_split(predictions, "test")
    labels, probs = test["label"].to_numpy(), test["prob"].to_numpy()
    if len(np.unique(labels)) < 2:
        return None
    saved = run.threshold()
    threshold = float(saved["value"]) if saved else DEFAULT_THRESHOLD
    summary = monitoring.summary(run)  # what the runs table says of it
    row = {key: summary[key] for key in TRAINED}
    status, config, tested = run.status(), run.config(), test_set(run, predictions)
    row["seconds"] = monitoring.progress(run).elapsed if status.get("started") else None
    # A stopped run trained less than a finished one with the same settings: it repeats none.
    experiment = config.settings_key() + tested.key if status.get("state") == "finished" else None
    return Result(run, tested, float(metrics.curves(labels, probs).auc),
                  metrics.auc_interval(labels, probs, RESAMPLES), threshold, saved is not None,
                  metrics.confusion(labels, probs, threshold).metrics(), row, config.seed, experiment)


SHOWN = ("sensitivity", "specificity", "accuracy")


def table(results: list[Result], pool_seeds: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranked, apart): runs on the official test films ranked with the published results by AUC,
    and the other runs with the reason they are kept apart. Repeats of one experiment (same
    settings, other seeds) are one row when ``pool_seeds``."""
    groups: list[list[Result]] = []
    for r in sorted(results, key=lambda r: r.run.number):
        candidates = [g for g in groups if pool_seeds and _repeats(g, r)]  # the same owner's repeats first
        group = next((g for g in candidates if g[0].run.owner == r.run.owner), next(iter(candidates), None))
        if group is None:
            groups.append([r])
        else:
            group.append(r)
    rows = [_row(group) for group in groups]
    ranked = [row for row in rows if row["reason"] is None] + [_reference_row(ref) for ref in REFERENCES]
    apart = [row for row in rows if row["reason"] is not None]
    ranked_frame = pd.DataFrame(ranked).sort_values("AUC", ascending=False, ignore_index=True).drop(columns="reason")
    ranked_frame.insert(0, "rank", range(1, len(ranked_frame) + 1))
    apart_frame = pd.DataFrame(apart)
    if len(apart_frame):
        apart_frame = apart_frame.sort_values(["data set", "AUC"], ascending=[True, False], ignore_index=True)
    return ranked_frame, apart_frame


def _repeats(group: list[Result], r: Result) -> bool:
    """Whether ``r`` repeats the group's experiment with a seed not yet in it: two students who ran
    the same seed made two experiments, not a spread of luck."""
    return (r.experiment is not None and r.experiment == group[0].experiment
            and r.seed not in {x.seed for x in group})


def _row(group: list[Result]) -> dict:
    """One experiment: a single run with its 95 % interval, or repeats as mean ± sd."""
    first, seeds = group[0], sorted({r.seed for r in group})
    aucs = np.array([r.auc for r in group])
    if len(group) == 1:
        low, high = first.auc_interval
        spread = f"95 % CI {low:.3f}–{high:.3f}"
    else:
        sd = aucs.std(ddof=1)
        low, high = aucs.mean() - sd, aucs.mean() + sd
        spread = f"± {sd:.3f} sd, {len(group)} runs"
    name = first.run.name if len(group) == 1 else SEED_SUFFIX.sub("", first.run.name)
    row = {"number": first.run.number, "run": name, "runs": len(group),
           "seeds": ", ".join(map(str, seeds)), "AUC": round(float(aucs.mean()), 3), "AUC spread": spread,
           "AUC low": float(low), "AUC high": float(high)}
    for name in SHOWN:
        row[name] = _mean_sd([r.values[name] for r in group])
    thresholds = sorted({round(r.threshold, 3) for r in group})
    chosen = any(r.threshold_chosen for r in group)
    row["threshold"] = (f"{thresholds[0]:.3f}" if len(thresholds) == 1 else
                        f"{thresholds[0]:.3f}–{thresholds[-1]:.3f}") + ("" if chosen else " (default)")
    row.update(first.row)
    row["owner"] = ", ".join(dict.fromkeys(r.row["owner"] for r in group))
    seconds = [r.row["seconds"] for r in group if r.row["seconds"] is not None]
    row["seconds"] = float(np.mean(seconds)) if seconds else None
    row["device"] = ", ".join(dict.fromkeys(r.row["device"] for r in group if r.row["device"]))
    row["test films"] = first.test.films
    row["reason"] = first.test.reason
    return row


def _mean_sd(values: list[float]) -> str:
    """A share as a percentage; repeats as mean ± sd."""
    values = np.array(values, float) * 100
    if len(values) == 1:
        return f"{values[0]:.1f} %"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f} %"


def _reference_row(ref: Reference) -> dict:
    def share(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.1f} %"

    unknown = dict.fromkeys(TRAINED) | {"seconds": None, "device": ""}  # a run row's other columns: not published
    return unknown | {
            "number": None, "run": ref.name, "runs": None, "seeds": "", "AUC": ref.auc, "AUC spread": "published",
            "AUC low": None, "AUC high": None,
            "sensitivity": share(ref.sensitivity), "specificity": share(ref.specificity),
            "accuracy": share(ref.accuracy), "threshold": "", "data set": ref.images, "owner": "published",
            "model": ref.model, "image size": ref.image_size,
            "test films": OFFICIAL_TEST[0], "reason": None}
