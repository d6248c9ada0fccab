"""Voxel grids and volumes: the one place that maps voxel <-> mm <-> sampling coordinates.

A :class:`Grid` is a shape and a 4 x 4 voxel-to-world affine (mm, RAS+ world as in NIfTI).
A :class:`Volume` is a tensor of values on a grid. :func:`resample` moves data from one grid
to another through world coordinates with ``torch.nn.functional.grid_sample``.

Conventions
-----------
Tensors inside vbmkit are (B, C, X, Y, Z) float32 in voxel order of the grid (RAS after
:func:`vbmkit.io.nifti.load_volume`). ``grid_sample`` takes the last axis of its sampling grid
in (z, y, x) order for an input laid out (B, C, X, Y, Z), and with ``align_corners=True``
voxel index ``i`` of an axis of length ``n`` maps to ``2 i / (n - 1) - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vbmkit.errors import GridMismatchError, ImageError
from vbmkit.sampling import grid_sample


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid: ``shape`` (X, Y, Z) and ``affine`` (4, 4) voxel -> mm."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        affine = np.asarray(self.affine, dtype=np.float64)
        if len(shape) != 3 or min(shape) < 1:
            raise ImageError(f"Grid shape: expected 3 positive sizes; got {self.shape}")
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ImageError(f"Grid affine: expected a finite 4 x 4 matrix; got {affine!r}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ImageError(f"Grid affine: expected an invertible 3 x 3 part; got {affine!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths in mm, shape (3,)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (cm^3): |det A| mm^3 / 1000."""
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def matches(self, other: Grid, *, atol: float = 1e-3) -> bool:
        """True when shapes are equal and affines agree within ``atol`` mm."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    def check_same(self, other: Grid, *, names: tuple[str, str] = ("first", "second")) -> None:
        """Raise :class:`GridMismatchError` naming both grids unless they match."""
        if not self.matches(other):
            raise GridMismatchError(
                f"images must share one voxel grid: {names[0]} has shape {self.shape} and affine\n"
                f"{np.array2string(self.affine, precision=3)}\nbut {names[1]} has shape "
                f"{other.shape} and affine\n{np.array2string(other.affine, precision=3)}"
            )

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices (..., 3) to mm (..., 3)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Map mm (..., 3) to (fractional) voxel indices (..., 3)."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]


@dataclass(frozen=True, eq=False)
class Volume:
    """Values on a grid: ``data`` (X, Y, Z) tensor and ``affine`` (4, 4) voxel -> mm."""

    data: torch.Tensor
    affine: np.ndarray

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ImageError(f"Volume data: expected 3 dimensions; got shape {tuple(self.data.shape)}")
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=np.float64))

    @property
    def grid(self) -> Grid:
        return Grid(tuple(self.data.shape), self.affine)


def sampling_grid(
    target: Grid,
    source: Grid,
    *,
    target_to_source_mm: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised ``grid_sample`` coordinates of every target voxel in the source volume.

    Parameters
    ----------
    target, source : Grid
        Grids of the output and of the data to sample.
    target_to_source_mm : ndarray (4, 4), optional
        A world-space transform applied to target mm before looking them up in the source
        (for example an affine registration); identity when omitted.

    Returns
    -------
    torch.Tensor
        (1, X, Y, Z, 3) in (z, y, x) order, ``align_corners=True`` convention.
    """
    m = np.linalg.inv(source.affine)
    if target_to_source_mm is not None:
        m = m @ np.asarray(target_to_source_mm, dtype=np.float64)
    m = m @ target.affine  # target voxel -> source voxel
    sizes = np.asarray(source.shape, dtype=np.float64)
    norm = np.diag(np.r_[2.0 / np.maximum(sizes - 1, 1), 1.0])
    norm[:3, 3] = -1.0
    m = norm @ m  # target voxel -> normalised source coordinate (x, y, z)
    mt = torch.as_tensor(m[:3], dtype=torch.float64, device=device)
    axes = [torch.arange(n, dtype=torch.float64, device=device) for n in target.shape]
    ii, jj, kk = torch.meshgrid(*axes, indexing="ij")
    ijk1 = torch.stack([ii, jj, kk, torch.ones_like(ii)], dim=-1)  # (X, Y, Z, 4)
    xyz = ijk1 @ mt.T  # (X, Y, Z, 3) in (x, y, z)
    return xyz.flip(-1).unsqueeze(0).to(dtype)


def resample(
    data: torch.Tensor,
    source: Grid,
    target: Grid,
    *,
    mode: str = "bilinear",
    target_to_source_mm: np.ndarray | None = None,
    padding_value: float = 0.0,
) -> torch.Tensor:
    """Resample (B, C, X, Y, Z) data from ``source`` onto ``target`` through world coordinates.

    Parameters
    ----------
    data : torch.Tensor
        (B, C, X, Y, Z) or (X, Y, Z) values on ``source``.
    mode : {"bilinear", "nearest"}
        Trilinear interpolation, or nearest neighbour for label maps.
    padding_value : float
        Value outside the source field of view.

    Returns
    -------
    torch.Tensor
        Same layout as ``data`` on the target grid, same dtype (labels come back as given).
    """
    squeeze = data.ndim == 3
    x = data[None, None] if squeeze else data
    if x.ndim != 5:
        raise ImageError(f"resample: expected (B, C, X, Y, Z) or (X, Y, Z); got {tuple(data.shape)}")
    if tuple(x.shape[2:]) != source.shape:
        raise GridMismatchError(f"resample: data shape {tuple(x.shape[2:])} != source grid {source.shape}")
    work = x.float() if not x.is_floating_point() or x.dtype == torch.float16 else x
    grid = sampling_grid(target, source, target_to_source_mm=target_to_source_mm,
                         device=x.device, dtype=work.dtype)
    grid = grid.expand(x.shape[0], *grid.shape[1:])
    if padding_value != 0.0:
        out = grid_sample(work - padding_value, grid, mode=mode, padding_mode="zeros",
                          align_corners=True) + padding_value
    else:
        out = grid_sample(work, grid, mode=mode, padding_mode="zeros", align_corners=True)
    out = out.to(x.dtype) if not x.is_floating_point() else out
    return out[0, 0] if squeeze else out
