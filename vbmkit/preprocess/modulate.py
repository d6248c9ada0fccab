"""Jacobian modulation: tissue maps in template space that keep the native tissue volume.

The full transform from the template to the subject is
``T(x) = M (A_t phi(A_t^-1 x))`` in mm: ``A_t`` the template voxel -> mm affine, ``phi`` the
nonlinear deformation (template voxel -> template voxel of the affinely aligned subject) and
``M`` the affine registration (template mm -> subject mm). By the change of variables
``integral p(T(x)) |det DT(x)| dx = integral p(y) dy``, the modulated map
``mwp(x) = p(T(x)) |det M_lin| det D phi(x)`` sums (times the template voxel volume) to the
native tissue volume (sum of ``p`` times the native voxel volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.jacobian import affine_jacobian_determinant, jacobian_determinant
from vbmkit.preprocess.warp import _FieldSampler, deformation_to_displacement, warp
from vbmkit.sampling import grid_sample
from vbmkit.space import Grid


@dataclass(frozen=True)
class WarpedTissue:
    """Tissue maps on the template grid.

    Attributes
    ----------
    warped : torch.Tensor
        (C, X, Y, Z) unmodulated warped probabilities (``wp1``, ``wp2``), pulled from native space.
    modulated : torch.Tensor
        (C, X, Y, Z) modulated maps (``mwp1``, ``mwp2``): native volume per template voxel volume.
    jacobian : torch.Tensor
        (X, Y, Z) ``|det M_lin| det D phi``: subject volume (mm^3) per template volume (mm^3).
    """

    warped: torch.Tensor
    modulated: torch.Tensor
    jacobian: torch.Tensor


def modulate(warped: torch.Tensor, jac_det: torch.Tensor, *, affine_det: float = 1.0) -> torch.Tensor:
    """Multiply warped maps by the Jacobian determinant of the full template -> subject map.

    Parameters
    ----------
    warped : torch.Tensor
        (C, X, Y, Z) or (B, C, X, Y, Z) unmodulated maps on the template grid.
    jac_det : torch.Tensor
        (X, Y, Z) determinant of the nonlinear deformation (template voxel -> voxel).
    affine_det : float
        ``|det|`` of the linear part of the affine (template mm -> subject mm),
        :func:`vbmkit.preprocess.jacobian.affine_jacobian_determinant`.

    Returns
    -------
    torch.Tensor
        Same shape as ``warped``: ``warped * jac_det * affine_det``.
    """
    if tuple(warped.shape[-3:]) != tuple(jac_det.shape):
        raise ImageError(f"modulate: warped spatial shape {tuple(warped.shape[-3:])} != jac_det shape {tuple(jac_det.shape)}")
    return warped * jac_det.to(warped) * float(affine_det)


def _native_positions(deformation: torch.Tensor, native_grid: Grid, template_grid: Grid,
                      matrix: np.ndarray) -> torch.Tensor:
    """Native voxel coordinates (X, Y, Z, 3) of T(x) for every template voxel x."""
    k = np.linalg.inv(native_grid.affine) @ np.asarray(matrix, dtype=np.float64) @ template_grid.affine
    kt = torch.as_tensor(k, dtype=torch.float64, device=deformation.device)
    pos = deformation.double() @ kt[:3, :3].T + kt[:3, 3]
    return pos.to(torch.float32)


def _check(tissue, native_grid, template_grid, matrix, deformation) -> None:
    if tissue.ndim != 4 or tuple(tissue.shape[1:]) != native_grid.shape:
        raise ImageError(f"modulate: tissue must be (C, X, Y, Z) on the native grid {native_grid.shape}; "
                         f"got {tuple(tissue.shape)}")
    if deformation.ndim != 4 or tuple(deformation.shape) != (*template_grid.shape, 3):
        raise ImageError(f"modulate: deformation must be (X, Y, Z, 3) on the template grid "
                         f"{template_grid.shape}; got {tuple(deformation.shape)}")
    m = np.asarray(matrix)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ImageError(f"modulate: matrix must be a finite (4, 4) array; got shape {m.shape}")


def push_amount(amount: torch.Tensor, positions: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Scatter-add amounts at arbitrary voxel positions onto a grid with trilinear weights.

    Parameters
    ----------
    amount : torch.Tensor
        (C, N) what each of N source points carries (e.g. tissue volume in units of the target
        voxel volume).
    positions : torch.Tensor
        (N, 3) position of each point in target voxel coordinates (x, y, z).
    shape : tuple of 3 int
        Target grid shape (X, Y, Z).

    Returns
    -------
    torch.Tensor
        (C, X, Y, Z) float64: each point adds ``amount * w_k`` to its 8 neighbouring voxels,
        ``w_k`` the trilinear weights (sum 1). This is the adjoint of trilinear pull
        (``<push(a), b> = <a, pull(b)>``), so ``sum(out) = sum(amount)`` exactly for every
        point whose 8 neighbours lie on the grid; weight falling off the grid is lost (as SPM's
        "preserve amount" push). Non-finite positions push nothing.
    """
    if amount.ndim != 2 or positions.ndim != 2 or positions.shape[1] != 3 or amount.shape[1] != positions.shape[0]:
        raise ImageError(f"push_amount: expected amount (C, N) and positions (N, 3); got "
                         f"{tuple(amount.shape)} and {tuple(positions.shape)}")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ImageError(f"push_amount: shape must be 3 positive sizes; got {shape}")
    c = amount.shape[0]
    out = torch.zeros(c, int(np.prod(shape)), dtype=torch.float64, device=amount.device)
    pos = positions.to(amount.device, torch.float64)
    finite = torch.isfinite(pos).all(1)
    pos, values = pos[finite], amount[:, finite].double()
    base = torch.floor(pos)
    frac = pos - base
    base = base.long()
    dims = torch.as_tensor(shape, device=pos.device)
    for corner in range(8):
        offs = torch.as_tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1], device=pos.device)
        idx = base + offs
        w = torch.where(offs.bool(), frac, 1.0 - frac).prod(1)
        ok = ((idx >= 0) & (idx < dims)).all(1)
        flat = (idx[ok, 0] * shape[1] + idx[ok, 1]) * shape[2] + idx[ok, 2]
        out.index_add_(1, flat, values[:, ok] * w[ok])
    return out.reshape(c, *shape)


def modulate_native(
    tissue: torch.Tensor,
    native_grid: Grid,
    template_grid: Grid,
    matrix: np.ndarray,
    deformation: torch.Tensor,
    *,
    inverse: torch.Tensor | None = None,
    method: str = "pull",
) -> WarpedTissue:
    """Warped and modulated tissue maps on the template grid from native probabilities.

    Parameters
    ----------
    tissue : torch.Tensor
        (C, Xn, Yn, Zn) native-space probabilities (p1 GM, p2 WM) on ``native_grid``.
    native_grid, template_grid : Grid
        The subject's RAS grid and the template (output) grid.
    matrix : ndarray (4, 4)
        Affine registration, template mm -> subject mm (:class:`AffineResult.matrix`).
    deformation : torch.Tensor
        (X, Y, Z, 3) nonlinear map ``phi`` (template voxel -> template voxel of the
        affinely aligned subject), :class:`NonlinearResult.deformation`.
    inverse : torch.Tensor, optional
        (X, Y, Z, 3) ``phi^-1``; required by ``method="push"``.
    method : {"pull", "push"}
        ``pull``: ``mwp(x) = p(T x) |det M_lin| det D phi(x)`` (one trilinear interpolation of
        the native map, as deepmriprep). ``push``: every native voxel sends its tissue volume
        ``p(y) v_native`` to ``T^-1(y)`` with trilinear weights (as SPM/CAT12 "preserve
        amount"), divided by the template voxel volume; the total is preserved exactly up to
        mass that leaves the template field of view.

    Returns
    -------
    WarpedTissue
        ``warped`` (always pulled), ``modulated`` and the total Jacobian map.

    Notes
    -----
    The Jacobian used is that of the template -> subject map ``T`` (the side on which the
    output is sampled): a template voxel of volume ``v_t`` covers ``|det DT| v_t`` of subject
    space, so it carries ``p |det DT|`` tissue per unit template volume, and the sum over the
    template grid is a Riemann sum of ``integral p(T x) |det DT| dx = integral p dy``, the
    native volume. Pull is exact up to interpolation and finite-difference error (smooth maps
    and fields: ~1e-3 relative); push is exact by construction.
    """
    _check(tissue, native_grid, template_grid, matrix, deformation)
    if method not in ("pull", "push"):
        raise ImageError(f"modulate_native: method must be 'pull' or 'push'; got {method!r}")
    pos = _native_positions(deformation, native_grid, template_grid, matrix)
    warped = warp(tissue[None].float(), pos)[0]
    jac = jacobian_determinant(deformation.double()).float() * affine_jacobian_determinant(matrix)
    if method == "pull":
        return WarpedTissue(warped=warped, modulated=warped * jac, jacobian=jac)
    if inverse is None:
        raise ImageError("modulate_native: method='push' needs the inverse deformation (NonlinearResult.inverse)")
    if tuple(inverse.shape) != tuple(deformation.shape):
        raise ImageError(f"modulate_native: inverse shape {tuple(inverse.shape)} != deformation shape {tuple(deformation.shape)}")
    keep = (tissue > 0).any(0)
    idx = torch.nonzero(keep).double()
    values = tissue[:, keep].T.float()  # (N, C)
    # native voxel -> template voxel of the aligned subject: A_t^-1 M^-1 A_n
    k = np.linalg.inv(template_grid.affine) @ np.linalg.inv(np.asarray(matrix, np.float64)) @ native_grid.affine
    kt = torch.as_tensor(k, dtype=torch.float64, device=tissue.device)
    q = (idx @ kt[:3, :3].T + kt[:3, 3]).float()  # (N, 3) aligned template voxel coords
    sampler = _FieldSampler(template_grid.shape, device=tissue.device, dtype=torch.float32)
    u_inv = deformation_to_displacement(inverse.float())  # (1, 3, X, Y, Z) voxels
    qn = sampler.to_norm(q.T.reshape(1, 3, -1, 1, 1)) - 1.0  # positions in grid_sample units
    grid = qn.permute(0, 2, 3, 4, 1)
    disp = grid_sample(u_inv, grid, mode="bilinear", padding_mode="border", align_corners=True)  # (1, 3, N, 1, 1)
    x = q + disp[0, :, :, 0, 0].T  # template voxel positions of the native voxels
    ratio = native_grid.voxel_volume_ml / template_grid.voxel_volume_ml
    modulated = push_amount((values * ratio).T, x, template_grid.shape).float()
    return WarpedTissue(warped=warped, modulated=modulated, jacobian=jac)
