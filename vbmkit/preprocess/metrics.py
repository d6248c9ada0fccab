"""Registration quality figures under the definitions of the deepmriprep paper.

``warp_mse`` is deepmriprep's (``preprocess.py``: ``((wp[:2] - template[:2]) ** 2).mean()``);
``linear_elasticity`` reproduces torchreg 0.1.3's ``LinearElasticity(mu=2, lam=1)`` applied to
the displacement field, operation for operation, so the numbers compare with the paper
(median 9.9e-3 and ~250 for deepmriprep, 9.2e-3 and ~240 for CAT12).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError


def warp_mse(warped: torch.Tensor, template: torch.Tensor) -> float:
    """Mean squared difference of unmodulated warped GM/WM and the template GM/WM.

    Parameters
    ----------
    warped : torch.Tensor
        (C, X, Y, Z), C >= 2: warped (unmodulated) GM and WM probabilities on the template grid.
    template : torch.Tensor
        (C', X, Y, Z), C' >= 2: Template_4_GS volumes (GM, WM, ...).

    Returns
    -------
    float
        ``mean((warped[:2] - template[:2]) ** 2)`` over every voxel of the grid (background
        included) and both channels.
    """
    if warped.ndim != 4 or template.ndim != 4 or warped.shape[0] < 2 or template.shape[0] < 2:
        raise ImageError(f"warp_mse: expected warped and template (C>=2, X, Y, Z); got "
                         f"{tuple(warped.shape)} and {tuple(template.shape)}")
    if warped.shape[1:] != template.shape[1:]:
        raise ImageError(f"warp_mse: warped grid {tuple(warped.shape[1:])} != template grid {tuple(template.shape[1:])}")
    d = warped[:2].double() - template[:2].to(warped.device).double()
    return float((d * d).mean())


def _torchreg_grid(shape, device, dtype) -> torch.Tensor:
    theta = torch.eye(4, device=device, dtype=dtype)[None, :3]
    return F.affine_grid(theta, [1, 3, *shape], align_corners=True)


def _torchreg_jacobi_gradient(u: torch.Tensor, id_grid: torch.Tensor) -> torch.Tensor:
    # torchreg.utils.jacobi_gradient, kept literally (including its scaling of the (z, y, x)
    # components by (X-1, Y-1, Z-1)/2 and adding the identity grid) so the value matches.
    shape = torch.tensor(u.shape[1:4], device=u.device, dtype=u.dtype)
    x = 0.5 * (u + id_grid) * (shape - 1)
    x = x[0].permute(3, 0, 1, 2)  # (3 components, X, Y, Z)
    # the 3x3x3 conv3d of torchreg, written as slice differences (same values, much faster):
    # output channel 2 differentiates along X, 1 along Y, 0 along Z; valid part then replicate pad
    d_x = 0.5 * (x[:, 2:, 1:-1, 1:-1] - x[:, :-2, 1:-1, 1:-1])
    d_y = 0.5 * (x[:, 1:-1, 2:, 1:-1] - x[:, 1:-1, :-2, 1:-1])
    d_z = 0.5 * (x[:, 1:-1, 1:-1, 2:] - x[:, 1:-1, 1:-1, :-2])
    x = torch.stack([d_z, d_y, d_x], dim=1)  # (3, 3, X-2, Y-2, Z-2)
    x = F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate")
    return x.permute(0, 2, 3, 4, 1)


def linear_elasticity(displacement: torch.Tensor, *, mu: float = 2.0, lam: float = 1.0) -> float:
    """torchreg's linear-elasticity value of a displacement field.

    Parameters
    ----------
    displacement : torch.Tensor
        (3, X, Y, Z) or (1, 3, X, Y, Z) displacement ``phi - identity`` in voxels (x, y, z
        channels), e.g. :func:`vbmkit.preprocess.warp.deformation_to_displacement` of the
        template -> subject deformation.
    mu, lam : float
        Lame parameters (2 and 1 as deepmriprep).

    Returns
    -------
    float
        ``mean(sigma_xx^2 + sigma_xy^2 + sigma_xz^2 + sigma_yy^2 + sigma_yz^2 + sigma_zz^2)``
        exactly as torchreg 0.1.3 ``LinearElasticity(mu, lam)(u)`` with ``u`` the field in
        ``grid_sample`` units ((B, X, Y, Z, 3), normalised, (z, y, x) order).

    Notes
    -----
    torchreg differentiates ``identity + u`` twice with central differences (the second pass
    again adds the identity grid), so even a zero field has a positive value (a constant set
    by the grid shape) and the figure is not the textbook strain energy; it is kept for
    comparability with the paper. On a grid with X = Z (Template_4_GS: 113 x 137 x 113) its
    rescaling of normalised to voxel units is exact.
    """
    u = displacement[None] if displacement.ndim == 4 else displacement
    if u.ndim != 5 or u.shape[:2] != (1, 3):
        raise ImageError(f"linear_elasticity: expected a (3, X, Y, Z) displacement; got {tuple(displacement.shape)}")
    if min(u.shape[2:]) < 3:
        raise ImageError(f"linear_elasticity: every axis needs >= 3 voxels; got {tuple(u.shape[2:])}")
    u = u.double()
    shape = u.shape[2:]
    sizes = torch.tensor([max(n - 1, 1) for n in shape], device=u.device, dtype=u.dtype)
    u_norm = u[0].permute(1, 2, 3, 0).flip(-1) * (2.0 / sizes).flip(0)  # (X, Y, Z, 3) z, y, x
    u_norm = u_norm[None]
    id_grid = _torchreg_grid(shape, u.device, u.dtype)
    g = _torchreg_jacobi_gradient(u_norm, id_grid)
    u_xz, u_xy, u_xx = _torchreg_jacobi_gradient(g[None, 2], id_grid)
    u_yz, u_yy, u_yx = _torchreg_jacobi_gradient(g[None, 1], id_grid)
    u_zz, u_zy, u_zx = _torchreg_jacobi_gradient(g[None, 0], id_grid)
    e_xy = 0.5 * (u_xy + u_yx)
    e_xz = 0.5 * (u_xz + u_zx)
    e_yz = 0.5 * (u_yz + u_zy)
    trace = u_xx + u_yy + u_zz
    s_xx = 2 * mu * u_xx + lam * trace
    s_yy = 2 * mu * u_yy + lam * trace
    s_zz = 2 * mu * u_zz + lam * trace
    s_xy, s_xz, s_yz = 2 * mu * e_xy, 2 * mu * e_xz, 2 * mu * e_yz
    total = s_xx ** 2 + s_xy ** 2 + s_xz ** 2 + s_yy ** 2 + s_yz ** 2 + s_zz ** 2
    return float(total.mean())


def folding(jac_det: torch.Tensor) -> dict:
    """Summary of a Jacobian-determinant map.

    Returns
    -------
    dict
        ``min`` and ``max`` determinant (float) and ``n_folded``: the number of voxels with
        determinant <= 0 (the map folds or collapses there).
    """
    if jac_det.numel() == 0:
        raise ImageError("folding: expected a non-empty Jacobian determinant map; got 0 voxels")
    return {"min": float(jac_det.min()), "max": float(jac_det.max()),
            "n_folded": int((jac_det <= 0).sum())}


def jacobian_summary(jac_det: torch.Tensor, mask: torch.Tensor) -> dict:
    """Jacobian-determinant figures inside a mask (issue 13: the template brain, GM + WM > 0.5).

    Parameters
    ----------
    jac_det : torch.Tensor
        (X, Y, Z) determinant of the nonlinear deformation.
    mask : torch.Tensor
        (X, Y, Z) bool, the voxels to summarise (at least one).

    Returns
    -------
    dict
        ``median``; ``p0.5_rel`` and ``p99.5_rel``: the 0.5 and 99.5 percentiles divided by the
        median (linear interpolation between order statistics); ``min``, ``max`` and
        ``n_folded`` (determinant <= 0) inside the mask.
    """
    if jac_det.ndim != 3 or tuple(mask.shape) != tuple(jac_det.shape) or mask.dtype != torch.bool:
        raise ImageError(f"jacobian_summary: expected jac_det (X, Y, Z) and a bool mask of the same shape; got "
                         f"{tuple(jac_det.shape)} and {tuple(mask.shape)} {mask.dtype}")
    vals = jac_det[mask.to(jac_det.device)].double()
    if vals.numel() == 0:
        raise ImageError("jacobian_summary: the mask selects no voxel; expected at least one")
    vals = vals.sort().values

    def pct(q: float) -> float:  # numpy's default ("linear") percentile, without torch.quantile's size limit
        pos = q / 100.0 * (vals.numel() - 1)
        lo = int(pos)
        hi = min(lo + 1, vals.numel() - 1)
        return float(vals[lo] + (vals[hi] - vals[lo]) * (pos - lo))

    med = pct(50.0)
    return {"median": med, "p0.5_rel": pct(0.5) / med, "p99.5_rel": pct(99.5) / med,
            "min": float(vals[0]), "max": float(vals[-1]), "n_folded": int((vals <= 0).sum())}


def _mm_field(displacement: torch.Tensor, voxel_size_mm, name: str) -> tuple[torch.Tensor, list[float]]:
    u = displacement[None] if displacement.ndim == 4 else displacement
    if u.ndim != 5 or u.shape[:2] != (1, 3) or min(u.shape[2:]) < 3:
        raise ImageError(f"{name}: expected a (3, X, Y, Z) displacement with every axis >= 3; "
                         f"got {tuple(displacement.shape)}")
    h = [float(s) for s in voxel_size_mm]
    if len(h) != 3 or min(h) <= 0:
        raise ImageError(f"{name}: voxel_size_mm must be 3 positive numbers (mm); got {voxel_size_mm}")
    hv = torch.as_tensor(h, dtype=torch.float64, device=u.device).view(3, 1, 1, 1)
    return u[0].double() * hv, h


def bending_energy(displacement: torch.Tensor, voxel_size_mm) -> float:
    """Thin-plate bending energy of a displacement in mm, mean over voxels (mm^-2).

    Parameters
    ----------
    displacement : torch.Tensor
        (3, X, Y, Z) or (1, 3, X, Y, Z) in voxels (x, y, z channels), e.g. the non-affine
        displacement ``phi - identity`` on the template grid.
    voxel_size_mm : sequence of 3 float
        Grid spacing in mm.

    Returns
    -------
    float
        ``mean_x sum_i sum_jk (d_j d_k u_i)^2`` with ``u`` in mm and derivatives per mm (central
        differences, ``torch.gradient`` twice), i.e. the squared second derivatives
        (``u_xx^2 + u_yy^2 + u_zz^2 + 2 u_xy^2 + 2 u_xz^2 + 2 u_yz^2``); 0 for affine fields.
    """
    u, h = _mm_field(displacement, voxel_size_mm, "bending_energy")
    first = torch.gradient(u, spacing=h, dim=(1, 2, 3))
    total = torch.zeros((), dtype=torch.float64, device=u.device)
    for dj in first:
        for dk in torch.gradient(dj, spacing=h, dim=(1, 2, 3)):
            total = total + (dk * dk).sum(0).mean()
    return float(total)


def elastic_energy(displacement: torch.Tensor, voxel_size_mm, *, mu: float = 0.05, lam: float = 0.2) -> float:
    """Linear-elastic strain energy of a displacement in mm, mean over voxels (dimensionless).

    Parameters
    ----------
    displacement : torch.Tensor
        (3, X, Y, Z) or (1, 3, X, Y, Z) in voxels (x, y, z channels).
    voxel_size_mm : sequence of 3 float
        Grid spacing in mm.
    mu, lam : float
        Lame parameters (default SPM12 Shooting's 0.05 and 0.2).

    Returns
    -------
    float
        ``mean_x (mu sum_ij e_ij^2 + lam / 2 (tr e)^2)``, ``e = (Du + Du^T) / 2`` with ``u`` in
        mm (central differences); 0 for translations, unlike torchreg's
        :func:`linear_elasticity` (kept for the paper's figures).
    """
    u, h = _mm_field(displacement, voxel_size_mm, "elastic_energy")
    d = torch.gradient(u, spacing=h, dim=(1, 2, 3))  # d[j][i] = d_j u_i
    strain = sum((0.5 * (d[j][i] + d[i][j])) ** 2 for i in range(3) for j in range(3))
    trace = d[0][0] + d[1][1] + d[2][2]
    return float((mu * strain + 0.5 * lam * trace * trace).mean())
