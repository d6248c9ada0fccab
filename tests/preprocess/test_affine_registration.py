"""Affine registration recovers known transforms of an analytic brain-like phantom."""

import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.affine import register_affine
from vbmkit.space import Grid


def _rotation(deg_xyz):
    out = np.eye(3)
    for axis, deg in enumerate(deg_xyz):
        a = np.deg2rad(deg)
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def _phantom(mm: np.ndarray) -> np.ndarray:
    """Skull-stripped 'brain': ellipsoid (65 x 80 x 55 mm semi-axes, intensity 0.6) holding a
    bright 'white matter' core, two dark 'ventricles' and asymmetric blobs; smooth edges."""
    def ell(c, r):
        d = np.sqrt((((mm - c) / np.asarray(r, dtype=float)) ** 2).sum(-1))
        return 1.0 / (1.0 + np.exp((d - 1.0) / 0.05))
    brain = ell([0, 0, 0], [65, 80, 55])
    img = 0.6 * brain + 0.4 * ell([0, -5, 5], [45, 58, 35])
    img = img - 0.6 * ell([-10, 5, 10], [6, 22, 9]) - 0.6 * ell([12, 0, 10], [6, 18, 9])
    img = img + 0.3 * ell([35, 40, -20], [12, 15, 10]) - 0.3 * ell([-40, -45, 15], [10, 12, 14])
    return np.where(brain > 0.5, np.clip(img, 0, None), 0.0)  # zero outside the brain


def _sample(grid: Grid, to_phantom_mm: np.ndarray | None = None) -> torch.Tensor:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    mm = grid.voxel_to_world(ijk)
    if to_phantom_mm is not None:
        mm = mm @ to_phantom_mm[:3, :3].T + to_phantom_mm[:3, 3]
    return torch.tensor(_phantom(mm), dtype=torch.float32)


FIXED = Grid((46, 52, 40), np.array([[4.0, 0, 0, -92], [0, 4.0, 0, -104], [0, 0, 4.0, -78], [0, 0, 0, 1]]))
MOVING = Grid((60, 52, 44), np.array([[-3.0, 0, 0, 95], [0, 3.5, 0, -95], [0, 0, 3.0, -70], [0, 0, 0, 1]]))


def _mean_error_mm(found: np.ndarray, true: np.ndarray, fixed: torch.Tensor, grid: Grid | None = None) -> float:
    ijk = np.argwhere(fixed.numpy() > 0.25)
    mm = (grid if grid is not None else FIXED).voxel_to_world(ijk)
    diff = mm @ (found - true)[:3, :3].T + (found - true)[:3, 3]
    return float(np.linalg.norm(diff, axis=1).mean())


def test_recovers_rotation_translation_and_scale_to_below_1mm():
    true = np.eye(4)  # template mm -> subject mm
    true[:3, :3] = _rotation([10.0, -6.0, 8.0]) @ np.diag([1.08, 0.94, 1.03])
    true[:3, 3] = [7.0, -9.0, 5.0]
    fixed = _sample(FIXED)
    moving = _sample(MOVING, np.linalg.inv(true))  # subject(y) = phantom(true^-1 y)
    res = register_affine(moving, MOVING, fixed, FIXED, iterations=(200, 60))
    # 4 mm template voxels, 3-3.5 mm subject voxels: sub-millimetre means sub-voxel accuracy
    assert _mean_error_mm(res.matrix, true, fixed) < 1.0
    assert res.history and res.loss <= res.history[0]


def test_converges_from_a_large_rotation_through_moment_initialisation():
    true = np.eye(4)
    true[:3, :3] = _rotation([0.0, 0.0, 120.0])
    true[:3, 3] = [20.0, 10.0, -5.0]
    fixed = _sample(FIXED)
    moving = _sample(MOVING, np.linalg.inv(true))
    res = register_affine(moving, MOVING, fixed, FIXED, iterations=(150, 40))
    assert _mean_error_mm(res.matrix, true, fixed) < 1.5  # coarse-to-fine from 120 degrees away


def test_affine_errors():
    img = torch.zeros(FIXED.shape)
    with pytest.raises(ImageError, match="register_affine: moving has shape"):
        register_affine(torch.zeros(5, 5, 5), MOVING, img, FIXED)
    with pytest.raises(ImageError, match="scales_mm .* and iterations .* must be"):
        register_affine(img, FIXED, img, FIXED, scales_mm=(12.0,), iterations=(10, 10))
    with pytest.raises(ImageError, match="brain mask is empty"):
        register_affine(img, FIXED, img, FIXED)
    bad = img.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ImageError, match="fixed contains NaN"):
        register_affine(_sample(FIXED), FIXED, bad, FIXED)
