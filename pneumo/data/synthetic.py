"""Procedurally drawn chest-radiograph-like images: the offline default data set.

Not real X-rays. They exist so the dashboard works on a fresh machine with no download,
and because the lesion of every PNEUMONIA image is known exactly: saliency maps can be
scored against it. Each image depends only on (seed, index, size), never on the order in
which images are drawn.

Difficulty is set for a classroom: opacities range from obvious to faint, normal lungs
carry vessel-like texture that looks a little like faint opacities, and exposure and noise
vary, so a small CNN learns in a couple of minutes but does not reach a perfect score at
once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Split sizes and pneumonia prevalence mirror the Kermany set (about 74 % pneumonia in
# train, 62.5 % in test), so class imbalance is part of the lesson.
SPLITS: dict[str, tuple[int, float]] = {"train": (1800, 0.74), "val": (200, 0.74), "test": (600, 0.625)}
FOLLOW_UP_SHARE = 0.2  # share of patients with a second film, so grouping by patient matters
VIRUS_SHARE = 0.35


@dataclass(frozen=True)
class SyntheticCase:
    """What one synthetic image shows, before it is drawn."""

    index: int
    split: str
    label: int
    patient: str
    subtype: str


def cases(seed: int = 0) -> list[SyntheticCase]:
    """The deterministic list of cases (split, label, patient, subtype) for a seed."""
    rng = np.random.default_rng([seed, 10_000_019])
    out: list[SyntheticCase] = []
    patient_no = 0
    for split, (n, prevalence) in SPLITS.items():
        drawn = 0
        while drawn < n:
            patient_no += 1
            label = int(rng.random() < prevalence)
            subtype = ("virus" if rng.random() < VIRUS_SHARE else "bacteria") if label else "normal"
            films = 2 if rng.random() < FOLLOW_UP_SHARE else 1
            for _ in range(min(films, n - drawn)):
                out.append(SyntheticCase(len(out), split, label, f"S{patient_no:05d}", subtype))
                drawn += 1
    return out


def draw(case: SyntheticCase, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw one case: (uint8 image, bool lesion mask), both ``size`` x ``size``."""
    rng = np.random.default_rng([seed, case.index])
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    edge = 2.5 / size  # soft edges about one pixel wide at any size

    dx, dy = rng.normal(0, 0.03, 2)
    body = _ellipse(x, y, dx, 0.15 + dy, rng.uniform(0.78, 0.9), 1.15, edge * 4)
    right = _ellipse(x, y, dx - rng.uniform(0.34, 0.4), dy - 0.08, rng.uniform(0.22, 0.27), rng.uniform(0.5, 0.58),
                     edge * 3)
    left = _ellipse(x, y, dx + rng.uniform(0.34, 0.4), dy - 0.1, rng.uniform(0.2, 0.25), rng.uniform(0.47, 0.55),
                    edge * 3)
    lungs = np.clip(right + left, 0, 1)
    heart = _ellipse(x, y, dx + rng.uniform(0.1, 0.18), dy + 0.25, rng.uniform(0.26, 0.32), rng.uniform(0.2, 0.26),
                     edge * 8)
    spine = _band(np.abs(x - dx), 0.07, edge * 2)
    ribs = _ribs(x - dx, y - dy, rng, edge)

    img = 0.04 + 0.55 * body
    img -= 0.36 * lungs * body
    img += 0.10 * ribs * body
    img += 0.22 * spine * body
    img += 0.22 * heart
    # Vessel-like markings in every lung: the texture a faint opacity must stand out from.
    img += rng.uniform(0.03, 0.07) * lungs * _smooth_noise(rng, size, 12) ** 2

    lesion = np.zeros_like(img)
    if case.label:
        lesion = _opacities(x, y, lungs, rng, viral=case.subtype == "virus")
        img += lesion * lungs
    mask = (lesion * lungs) > 0.04

    gain, gamma = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25)
    img = np.clip(img * gain + rng.uniform(-0.05, 0.05), 0, 1) ** gamma
    img += rng.normal(0, rng.uniform(0.015, 0.045), img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, soft: float) -> np.ndarray:
    r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return 1.0 / (1.0 + np.exp((r - 1.0) / soft))


def _band(distance: np.ndarray, half_width: float, soft: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp((distance - half_width) / soft))


def _ribs(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, edge: float) -> np.ndarray:
    """Posterior ribs: nine bands curving down from the spine towards the sides.

    A band fades with distance, so the brightest band at a pixel is the nearest one: one
    band per pixel is drawn, not nine.
    """
    spacing = rng.uniform(0.12, 0.15)
    first = -0.8 + 0.6 * x**2
    nearest = np.clip(np.round((y - first) / spacing), 0, 8)
    return _band(np.abs(y - first - nearest * spacing), 0.03, edge * 2)


def _opacities(x: np.ndarray, y: np.ndarray, lungs: np.ndarray, rng: np.random.Generator, viral: bool) -> np.ndarray:
    """Patchy opacities at random places inside the lungs.

    Bacterial: one or two dense, lobar patches. Viral: several small faint patches, often
    in both lungs. Amplitudes run from obvious to barely visible.
    """
    size = x.shape[0]
    inside = np.argwhere(lungs > 0.9)
    count = rng.integers(3, 6) if viral else rng.integers(1, 3)
    amplitude = rng.uniform(0.05, 0.22) if viral else rng.uniform(0.07, 0.32)
    out = np.zeros_like(x)
    for _ in range(count):
        row, col = inside[rng.integers(len(inside))]
        cx, cy = x[row, col], y[row, col]
        sigma = rng.uniform(0.04, 0.08) if viral else rng.uniform(0.07, 0.14)
        blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)))
        out += blob
    patchy = np.clip(0.4 + _smooth_noise(rng, size, 10), 0, None)
    return amplitude * np.clip(out, 0, 1) * patchy


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise with features about size/cells pixels across, scaled to roughly [0, 1]."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC), dtype=np.float64)
