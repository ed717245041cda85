"""How much a saliency map says about the model: deletion and insertion (Petsiuk et al., 2018,
RISE), against a random map, and how far the methods shown agree.

Deletion removes the film's most salient pixels first, in equal steps, and follows the
probability of pneumonia: a map that found the evidence makes it fall fast (a small area under
the curve). Insertion starts from a film with everything removed and reveals the most salient
pixels first: the probability should rise fast (a large area). "Removed" means replaced by a
strongly blurred copy of the same film, which keeps its overall brightness, rather than black,
which no radiograph looks like. One number sums a map up: the insertion area minus the
deletion area (high when the pixels it ranks first are the ones the model needs); a random
order of the pixels gives the number a map must beat. A confident model can keep its call on
a film with half its pixels blurred, so both curves may stay high: the difference still
tells a map that finds the evidence from one that does not. All the steps of both curves go
through the model as one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from PIL import Image, ImageFilter

from pneumo.explain.saliency import rank_similarity

STEPS = 20  # shares of the pixels removed or revealed: 0, 5 %, ... 100 %
RANDOM_ORDERS = 3  # random maps a map must beat: a random map's score is a draw too
# For a model over LARGE_MODEL_PARAMETERS (ResNet50 at 224 px costs 0.1 s a film here): fewer.
LARGE_MODEL_STEPS, LARGE_MODEL_RANDOM_ORDERS = 5, 2
LARGE_MODEL_PARAMETERS = 5_000_000
BLUR_SHARE = 0.1  # blur radius as a share of the film's side

Scorer = Callable[[np.ndarray], np.ndarray]  # (n, H, W) uint8 films -> (n,) probabilities of pneumonia


def budget_for(parameters: int) -> tuple[int, int]:
    """Steps and random orders for a model of this size: every step of every order is two films
    through the model, and the page must answer in seconds (bench/predict_speed.py)."""
    if parameters <= LARGE_MODEL_PARAMETERS:
        return STEPS, RANDOM_ORDERS
    return LARGE_MODEL_STEPS, LARGE_MODEL_RANDOM_ORDERS


@dataclass(frozen=True)
class Curves:
    """Probability after removing (deletion) or revealing (insertion) each share of the pixels."""

    shares: np.ndarray  # 0 .. 1
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_area(self) -> float:
        return float(np.trapezoid(self.deletion, self.shares))

    @property
    def insertion_area(self) -> float:
        return float(np.trapezoid(self.insertion, self.shares))

    @property
    def difference(self) -> float:
        """Insertion area minus deletion area: the higher, the more the order found the evidence."""
        return self.insertion_area - self.deletion_area


def blurred(film: np.ndarray) -> np.ndarray:
    """The film with its detail removed: what "deleted" pixels are replaced by."""
    radius = max(1.0, BLUR_SHARE * max(film.shape))
    return np.asarray(Image.fromarray(film).filter(ImageFilter.GaussianBlur(radius)))


def _between(film: np.ndarray, empty: np.ndarray, order: np.ndarray, steps: int) -> np.ndarray:
    """The films strictly between "all there" and "all removed" along ``order``: first the
    deletion steps, then the insertion steps, (2 * (steps - 1), H, W)."""
    counts = np.round(np.linspace(0.0, 1.0, steps + 1)[1:-1] * film.size).astype(int)
    rank = np.empty(film.size, np.int64)
    rank[order] = np.arange(film.size)  # rank[i]: when pixel i is taken
    taken = rank[None, :] < counts[:, None]
    flat, flat_empty = film.ravel(), empty.ravel()
    deleted = np.where(taken, flat_empty, flat)
    inserted = np.where(taken, flat, flat_empty)
    return np.concatenate([deleted, inserted]).reshape(-1, *film.shape).astype(np.uint8)


def _assemble(full: float, empty: float, between: np.ndarray, steps: int) -> Curves:
    deletion, insertion = between[: steps - 1], between[steps - 1:]
    return Curves(np.linspace(0.0, 1.0, steps + 1), np.r_[full, deletion, empty], np.r_[empty, insertion, full])


def curves(score: Scorer, film: np.ndarray, order: np.ndarray, steps: int = STEPS) -> Curves:
    """Deletion and insertion along ``order`` (flat pixel indices, most salient first), one batch."""
    empty = blurred(film)
    p = score(np.concatenate([film[None], empty[None], _between(film, empty, order, steps)]))
    return _assemble(p[0], p[1], p[2:], steps)


def saliency_order(saliency_map: np.ndarray) -> np.ndarray:
    """Pixels from the most to the least salient; ties (a flat region of the map) in a fixed
    random order, so a map that is empty in places is not credited with the image's scan order."""
    rng = np.random.default_rng(0)
    jitter = rng.random(saliency_map.size) * 1e-6
    return np.argsort(-(saliency_map.ravel().astype(np.float64) + jitter), kind="stable")


def random_order(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(size)


@dataclass(frozen=True)
class Faithfulness:
    """A map's deletion and insertion areas beside those of random orders of the pixels."""

    map: Curves
    randoms: tuple[Curves, ...]  # one or more

    @property
    def random(self) -> Curves:
        """The random orders' mean curves: what the sentence compares with."""
        first = self.randoms[0]
        return Curves(first.shares, np.mean([r.deletion for r in self.randoms], axis=0),
                      np.mean([r.insertion for r in self.randoms], axis=0))

    @property
    def best_random_difference(self) -> float:
        return max(r.difference for r in self.randoms)

    @property
    def better_than_random(self) -> bool:
        """Better than every random order, by at least the 0.01 the sentence shows ("+0.00 against
        +0.00" is not better): one random order's score is itself a draw, spread by up to 0.07
        between orders on a small dense model's film."""
        return self.map.difference - self.best_random_difference >= 0.01

    def sentence(self) -> str:
        m, r = self.map, self.random
        verdict = ("better than a random map: it points at pixels the model uses" if self.better_than_random else
                   "no better than a random map: read it with care")
        return (f"Deletion/insertion: blurring the pixels this map ranks first leaves an area of "
                f"{m.deletion_area:.2f} under the probability (a random map: {r.deletion_area:.2f}; lower is better), "
                f"revealing them first {m.insertion_area:.2f} (random: {r.insertion_area:.2f}; higher is better). "
                f"Insertion minus deletion **{m.difference:+.2f}** against {r.difference:+.2f} for a random map "
                f"(the best of {len(self.randoms)} random maps: {self.best_random_difference:+.2f}): {verdict}.")


def faithfulness(score: Scorer, film: np.ndarray, saliency_map: np.ndarray,
                 budget: tuple[int, int] = (STEPS, RANDOM_ORDERS),
                 randoms: tuple[Curves, ...] | None = None) -> Faithfulness:
    """Deletion and insertion of one map and of random maps (``budget``: steps, random orders),
    every film in one batch. ``randoms`` (for the same film and model) can be passed in when known:
    they do not depend on the map."""
    steps, random_orders = budget
    empty = blurred(film)
    orders = [saliency_order(saliency_map)]
    if randoms is None:  # the same steps: a fair area
        orders += [random_order(film.size, seed) for seed in range(random_orders)]
    between = [_between(film, empty, order, steps) for order in orders]
    p = score(np.concatenate([film[None], empty[None], *between]))
    full, blank = p[0], p[1]
    found = [_assemble(full, blank, part, steps) for part in np.split(p[2:], len(orders))]
    return Faithfulness(found[0], randoms or tuple(found[1:]))


def agreement(maps: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """Spearman rank correlation of every pair of maps shown, leaving out flat (empty) maps: they
    rank nothing, and the page says so beside each (a correlation of 0 would read as disagreement)."""
    ranked = [name for name, values in maps.items() if np.ptp(values) > 0]
    return [(a, b, rank_similarity(maps[a], maps[b])) for a, b in combinations(ranked, 2)]


def agreement_sentence(a: str, b: str, rho: float) -> str:
    strength = ("agree closely" if rho >= 0.7 else "agree in part" if rho >= 0.4 else
                "barely agree" if rho >= 0.1 else "do not agree")
    caution = ": maps that disagree cannot both show what the model used" if rho < 0.4 else ""
    return f"{a} and {b} {strength} (rank correlation {rho:.2f}){caution}."
