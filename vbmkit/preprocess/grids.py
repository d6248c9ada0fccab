"""Working grids of the preprocessing pipeline (pure tensor code).

The pipeline moves data between four grids: the subject's native grid, a coarse grid for the
affine registration, the segmentation grid (subject space: the native field of view at 1 mm)
and the 1.5 mm output grid of Template_4_GS. This module makes those grids and the
area-averaging downsampling between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError
from vbmkit.space import Grid


def downsample(data: torch.Tensor, grid: Grid, factors: int | Sequence[int]) -> tuple[torch.Tensor, Grid]:
    """Average non-overlapping blocks of ``factors`` voxels (area downsampling).

    Parameters
    ----------
    data : torch.Tensor
        (X, Y, Z) or (C, X, Y, Z) float values on ``grid``.
    grid : Grid
        Grid of ``data``.
    factors : int or 3 ints
        Block size per axis (1 keeps the axis). Voxels beyond the last whole block are dropped.

    Returns
    -------
    data : torch.Tensor
        Same leading layout, each axis ``n // f`` long.
    grid : Grid
        The coarse grid: voxel ``i`` sits at the centre of fine voxels ``f i .. f i + f - 1``.

    Notes
    -----
    Block means keep the integral of a density (sum * voxel volume) up to the dropped edge,
    which a point sampler does not.
    """
    f = (int(factors),) * 3 if isinstance(factors, (int, np.integer)) else tuple(int(v) for v in factors)
    if len(f) != 3 or min(f) < 1:
        raise ImageError(f"downsample factors: expected 3 integers >= 1; got {factors}")
    squeeze = data.ndim == 3
    x = data[None] if squeeze else data
    if tuple(x.shape[1:]) != grid.shape:
        raise ImageError(f"downsample: data shape {tuple(x.shape[1:])} does not match grid {grid.shape}")
    out = F.avg_pool3d(x[None].float(), kernel_size=f, stride=f)[0] if f != (1, 1, 1) else x.float()
    scale = np.diag([*f, 1.0]).astype(np.float64)
    scale[:3, 3] = (np.asarray(f) - 1) / 2.0
    coarse = Grid(tuple(out.shape[1:]), grid.affine @ scale)
    return (out[0] if squeeze else out), coarse


def factors_for(grid: Grid, target_mm: float) -> tuple[int, int, int]:
    """Integer block sizes bringing each voxel edge of ``grid`` closest to ``target_mm``."""
    return tuple(max(1, int(round(target_mm / float(s)))) for s in grid.voxel_size)  # type: ignore[return-value]


def grid_at_resolution(grid: Grid, voxel_mm: float) -> Grid:
    """A grid over the same field of view (axis-aligned, same corner) with cubic ``voxel_mm`` voxels.

    Used for the segmentation grid: the native field of view at ``segmentation_resolution_mm``.
    """
    if not voxel_mm > 0:
        raise ImageError(f"grid_at_resolution: expected a positive voxel size in mm; got {voxel_mm}")
    extent = (np.asarray(grid.shape) - 1) * grid.voxel_size  # mm between first and last centre
    shape = tuple(int(np.floor(e / voxel_mm + 1e-6)) + 1 for e in extent)
    direction = grid.affine[:3, :3] / grid.voxel_size  # unit axes
    affine = np.eye(4)
    affine[:3, :3] = direction * voxel_mm
    affine[:3, 3] = grid.affine[:3, 3]
    return Grid(shape, affine)


def deformation_to_mm(deformation: torch.Tensor, grid: Grid, matrix: np.ndarray) -> torch.Tensor:
    """Turn a voxel deformation on ``grid`` into subject mm (SPM/CAT12 ``y_`` convention).

    Parameters
    ----------
    deformation : torch.Tensor
        (X, Y, Z, 3) for each voxel of ``grid``, the (i, j, k) voxel position of ``grid`` it
        maps to in the affine-aligned subject.
    grid : Grid
        The output grid (Template_4_GS).
    matrix : ndarray (4, 4)
        The affine registration, template mm -> subject mm.

    Returns
    -------
    torch.Tensor
        (X, Y, Z, 3) float32 subject-space mm: ``matrix @ grid.affine @ [i, j, k, 1]``.
    """
    if deformation.ndim != 4 or deformation.shape[-1] != 3:
        raise ImageError(f"deformation_to_mm: expected (X, Y, Z, 3); got {tuple(deformation.shape)}")
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float64) @ grid.affine, dtype=torch.float64)
    d = deformation.double()
    return (d @ m[:3, :3].T + m[:3, 3]).float()
