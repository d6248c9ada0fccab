"""Exactness of the ROI volumes on label phantoms with known tissue fractions (prints the errors).

Usage::

    .venv/bin/python benchmarks/roi_exactness.py

Phantom: the shipped LPBA40 atlas on the 1.5 mm output grid (113 x 137 x 113). Every region r
gets a constant GM and WM fraction (random multiples of 1/1024, so float32 holds them exactly),
the background another one; 8 subjects. The hand count of region r is ``n_r * f_r * dv`` with
``n_r`` the atlas's voxel count (integer) and ``dv`` = 0.003375 mL. Printed: the largest
|volume - hand count| over all subjects, tissues and regions, and, for maps without tissue
outside the atlas, the largest |sum of regions - total|. Also the same with float32
accumulation, to show why float64 is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vbmkit.io.atlas import load_atlas  # noqa: E402
from vbmkit.stats.roi import region_index, region_volumes  # noqa: E402


def main() -> None:
    atlas = load_atlas("lpba40")
    ids = atlas.region_ids
    labels = atlas.labels
    dv = atlas.grid.voxel_volume_ml
    rng = np.random.default_rng(0)
    n_sub, n_t = 8, 2
    frac = rng.integers(0, 1025, size=(n_sub, n_t, len(ids) + 1)) / 1024.0  # last: background
    lut = np.full(int(labels.max()) + 1, len(ids))
    lut[ids] = np.arange(len(ids))
    pos = torch.from_numpy(lut)[labels]  # (X, Y, Z) position 0..R (R = background)
    maps = torch.from_numpy(frac.astype(np.float32))[:, :, pos]  # (B, T, X, Y, Z)
    counts = np.bincount(pos.reshape(-1).numpy(), minlength=len(ids) + 1)
    hand = frac * counts * dv  # (B, T, R + 1) exact up to float64 rounding
    index = region_index(labels, ids)
    vols = region_volumes(maps, index, voxel_volume_ml=dv)
    err_region = np.abs(vols.regional.numpy() - hand[:, :, :-1]).max()
    err_total = np.abs(vols.total.numpy() - hand.sum(-1)).max()
    print(f"LPBA40 phantom, {n_sub} subjects x {n_t} tissues x {len(ids)} regions on {atlas.grid.shape}:")
    print(f"  max |regional volume - hand count| = {err_region:.3e} mL (requirement 1e-6)")
    print(f"  max |total volume - hand count|    = {err_total:.3e} mL")
    maps[:, :, pos == len(ids)] = 0.0
    vols0 = region_volumes(maps, index, voxel_volume_ml=dv)
    gap = np.abs(vols0.regional.numpy().sum(-1) - vols0.total.numpy()).max()
    print(f"  no tissue outside the atlas: max |sum of regions - total| = {gap:.3e} mL (requirement 1e-6)")
    # the same sums accumulated in float32 (what a plain index_add_ on the maps would give)
    flat = maps.reshape(n_sub * n_t, -1)
    acc32 = torch.zeros(n_sub * n_t, len(ids)).index_add_(1, index.region_of_voxel, flat[:, index.voxels])
    err32 = np.abs(acc32.double().numpy().reshape(n_sub, n_t, -1) * dv - frac[:, :, :-1] * counts[:-1] * dv).max()
    print(f"  for comparison, float32 accumulation: max error {err32:.3e} mL")


if __name__ == "__main__":
    main()
