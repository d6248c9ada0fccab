"""Jacobian matrices and determinants of dense deformations by finite differences."""

from __future__ import annotations

import numpy as np
import torch

from vbmkit.errors import ImageError


def jacobian_matrix(deformation: torch.Tensor) -> torch.Tensor:
    """Spatial derivatives of a deformation in voxel units.

    Parameters
    ----------
    deformation : torch.Tensor
        (X, Y, Z, 3) or (B, X, Y, Z, 3) positions in voxels (x, y, z), each axis >= 2 voxels.

    Returns
    -------
    torch.Tensor
        (..., X, Y, Z, 3, 3) with ``J[..., i, j] = d phi_i / d x_j``.

    Notes
    -----
    Central differences ``(phi(x + 1) - phi(x - 1)) / 2`` inside, one-sided differences on the
    first and last voxel of each axis (``torch.gradient``); both are exact for affine maps.
    """
    squeeze = deformation.ndim == 4
    phi = deformation[None] if squeeze else deformation
    if phi.ndim != 5 or phi.shape[-1] != 3:
        raise ImageError(f"jacobian: expected a deformation (X, Y, Z, 3) or (B, X, Y, Z, 3); got {tuple(deformation.shape)}")
    if min(phi.shape[1:4]) < 2:
        raise ImageError(f"jacobian: every axis needs >= 2 voxels; got spatial shape {tuple(phi.shape[1:4])}")
    grads = torch.gradient(phi, dim=(1, 2, 3))  # each (B, X, Y, Z, 3): d phi / d x_j
    jac = torch.stack(grads, dim=-1)  # (B, X, Y, Z, 3 (i), 3 (j))
    return jac[0] if squeeze else jac


def jacobian_determinant(deformation: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of a deformation (voxels -> voxels, same voxel size).

    Parameters
    ----------
    deformation : torch.Tensor
        (X, Y, Z, 3) or (B, X, Y, Z, 3) positions in voxels, for example the template -> subject
        map ``phi`` of :func:`vbmkit.preprocess.nonlinear.register_nonlinear`.

    Returns
    -------
    torch.Tensor
        (X, Y, Z) or (B, X, Y, Z): local volume ratio ``det(d phi / d x)``; values <= 0 mark
        folding.
    """
    return torch.linalg.det(jacobian_matrix(deformation).double()).to(deformation.dtype)


def affine_jacobian_determinant(matrix: np.ndarray) -> float:
    """|det| of the linear part of a (4, 4) world->world affine: its constant volume ratio."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ImageError(f"affine matrix: expected a finite (4, 4) array; got shape {m.shape}")
    return float(abs(np.linalg.det(m[:3, :3])))
