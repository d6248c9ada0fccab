"""CAT12 templates from the deepmriprep wheel, loaded as RAS tensors."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
import torch

from vbmkit.io.resources import template_path
from vbmkit.space import Grid


@dataclass(frozen=True, eq=False)
class Template:
    """Template volumes in RAS voxel order.

    Attributes
    ----------
    data : torch.Tensor
        (C, X, Y, Z) float32 in [0, 1].
    grid : Grid
        RAS grid of ``data``.
    stored_affine : ndarray (4, 4)
        The affine as stored in the file (Template_4_GS is LAS); outputs on this grid are
        written with it (:func:`vbmkit.io.nifti.save_volume` ``orientation_of``).
    """

    data: torch.Tensor
    grid: Grid
    stored_affine: np.ndarray


@lru_cache(maxsize=4)
def _load(name: str) -> Template:
    img = nib.load(str(template_path(name)))
    stored = img.affine.copy()
    canon = nib.as_closest_canonical(img)
    arr = np.asanyarray(canon.dataobj).astype(np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    scale = float(arr.max()) if arr.max() > 1.5 else 1.0  # uint8/uint16 without scaling
    data = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0) / scale))
    return Template(data=data, grid=Grid(arr.shape[:3], canon.affine), stored_affine=stored)


def load_shooting_template() -> Template:
    """CAT12's ``Template_4_GS``: (3, 113, 137, 113) GM, WM, rest on the 1.5 mm output grid."""
    t = _load("Template_4_GS")
    return Template(t.data.clone(), t.grid, t.stored_affine)


def load_t1_template() -> Template:
    """CAT12's ``Template_05mm_bet``: (1, 339, 411, 339) brain-extracted T1 at 0.5 mm."""
    t = _load("Template_05mm_bet")
    return Template(t.data.clone(), t.grid, t.stored_affine)


def output_grid() -> tuple[Grid, np.ndarray]:
    """(RAS grid, stored affine) of vbmkit's modulated/warped outputs (Template_4_GS)."""
    t = _load("Template_4_GS")
    return t.grid, t.stored_affine
