"""Brute-force TFCE for the tests: one ``scipy.ndimage.label`` per distinct value (exact)."""

from __future__ import annotations

import numpy as np
import scipy.ndimage

RANK = {6: 1, 18: 2, 26: 3}


def brute_tfce(stat: np.ndarray, *, e: float = 0.5, h: float = 2.0, connectivity: int = 6) -> np.ndarray:
    """Exact TFCE of ``stat > 0``: on (h_{i+1}, h_i] between consecutive distinct values the
    clusters are those of ``stat >= h_i``, so the integral is a finite sum."""
    structure = scipy.ndimage.generate_binary_structure(3, RANK[connectivity])
    levels = np.unique(stat[stat > 0])[::-1]
    lower = np.append(levels[1:], 0.0)
    out = np.zeros(stat.shape)
    for hi, lo in zip(levels, lower, strict=True):
        labels, _ = scipy.ndimage.label(stat >= hi, structure=structure)
        sizes = np.bincount(labels.ravel()).astype(float)
        sizes[0] = 0.0
        out += sizes[labels] ** e * (hi ** (h + 1) - lo ** (h + 1)) / (h + 1)
    return out


def smooth_map(shape=(7, 8, 9), *, seed: int = 0, sigma: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = scipy.ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return x / x.std()
