"""The 2-D toy problem: four Gaussian clusters in the plane, one class each.

Stored like every dataset (uint8 "images"): each point is a 2-channel 1x1 image whose channels are
its x and y coordinates on a 256-level grid over the square [-half_width, half_width]^2, so every
stage (training, attacks in pixel units, calibration) runs on it unchanged, and the decision regions
over that square can be drawn exactly."""
from __future__ import annotations

import numpy as np

CLUSTERS2D_DEFAULTS = {"means": [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], "spread": 0.45,
                       "train_per_class": 250, "test_per_class": 100, "seed": 0}


def half_width(options: dict) -> float:
    """Half the side of the square the coordinates are stored on: every mean plus four spreads."""
    means = np.asarray(options["means"], dtype=float)
    return float(np.abs(means).max() + 4 * options["spread"])


def to_pixels(points: np.ndarray, half: float) -> np.ndarray:
    """Plane coordinates -> uint8 levels (clipped to the square)."""
    return np.rint((np.clip(points, -half, half) + half) / (2 * half) * 255).astype(np.uint8)


def to_plane(pixels, half: float):
    """Pixel values in [0, 1] -> plane coordinates."""
    return pixels * (2 * half) - half


def load(options: dict | None = None) -> dict:
    o = {**CLUSTERS2D_DEFAULTS, **(options or {})}
    means = np.asarray(o["means"], dtype=float)
    if means.shape != (4, 2):
        raise ValueError(f"data.clusters2d.means: expected four [x, y] pairs (one per class), got {o['means']!r}")
    if not o["spread"] > 0:
        raise ValueError(f"data.clusters2d.spread: must be > 0, got {o['spread']!r}")
    rng = np.random.default_rng(o["seed"])
    half = half_width(o)
    splits = {}
    for split, per_class in (("train", o["train_per_class"]), ("test", o["test_per_class"])):
        labels = np.repeat(np.arange(len(means)), per_class)
        points = means[labels] + rng.normal(0.0, o["spread"], size=(len(labels), 2))
        order = rng.permutation(len(labels))
        splits[f"x_{split}"] = to_pixels(points[order], half)[:, :, None, None]
        splits[f"y_{split}"] = labels[order].astype(np.int64)
    return {**splits, "classes": [f"cluster {k}" for k in range(len(means))], "half_width": half}
