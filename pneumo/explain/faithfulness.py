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

STEPS = 20
BLUR_SHARE = 0.1  # blur radius as a share of the film's side

Scorer = Callable[[np.ndarray], np.ndarray]  # (n, H, W) uint8 films -> (n,) probabilities of pneumonia


@dataclass(frozen=True)
class Curves:
    """Probability after removing (deletion) or revealing (insertion) each share of the pixels."""

    shares: np.ndarray  # (STEPS + 1,) 0 .. 1
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


def curves(score: Scorer, film: np.ndarray, order: np.ndarray, steps: int = STEPS) -> Curves:
    """Deletion and insertion along ``order`` (flat pixel indices, most salient first)."""
    empty = blurred(film)
    shares = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(shares * film.size).astype(int)
    rank = np.empty(film.size, np.int64)
    rank[order] = np.arange(film.size)  # rank[i]: when pixel i is taken
    taken = rank[None, :] < counts[:, None]  # (steps + 1, pixels)
    flat, flat_empty = film.ravel(), empty.ravel()
    deleted = np.where(taken, flat_empty, flat).reshape(-1, *film.shape)
    inserted = np.where(taken, flat, flat_empty).reshape(-1, *film.shape)
    probabilities = score(np.concatenate([deleted, inserted]).astype(np.uint8))
    return Curves(shares, probabilities[: steps + 1], probabilities[steps + 1:])


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
    """A map's deletion and insertion areas beside a random map's."""

    map: Curves
    random: Curves

    @property
    def better_than_random(self) -> bool:
        return self.map.difference > self.random.difference

    def sentence(self) -> str:
        m, r = self.map, self.random
        verdict = ("better than a random map: it points at pixels the model uses" if self.better_than_random else
                   "no better than a random map: read it with care")
        return (f"Deletion/insertion: blurring the pixels this map ranks first leaves an area of "
                f"{m.deletion_area:.2f} under the probability (a random map: {r.deletion_area:.2f}; lower is better), "
                f"revealing them first {m.insertion_area:.2f} (random: {r.insertion_area:.2f}; higher is better). "
                f"Insertion minus deletion **{m.difference:+.2f}** against {r.difference:+.2f}: {verdict}.")


def faithfulness(score: Scorer, film: np.ndarray, saliency_map: np.ndarray, random: Curves | None = None
                 ) -> Faithfulness:
    """Deletion and insertion of one map; ``random`` (the random map's curves for the same film and
    model) can be passed in when it was computed already: it does not depend on the map."""
    random = random or curves(score, film, random_order(film.size))
    return Faithfulness(curves(score, film, saliency_order(saliency_map)), random)


def agreement(maps: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """Spearman rank correlation of every pair of maps shown."""
    return [(a, b, rank_similarity(maps[a], maps[b])) for a, b in combinations(maps, 2)]


def agreement_sentence(a: str, b: str, rho: float) -> str:
    strength = ("agree closely" if rho >= 0.7 else "agree in part" if rho >= 0.4 else
                "barely agree" if rho >= 0.1 else "do not agree")
    return f"{a} and {b} {strength} (rank correlation {rho:.2f}): where methods differ, neither is the lesion."
