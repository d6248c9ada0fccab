"""Atlas labels carried into a subject's native space through a template -> native deformation.

Pure tensor code. CAT12 measures its ROI volumes in native space: the atlas is warped into the
subject with the inverse deformation and the native tissue maps are summed per label. vbmkit's
preprocessing (like SPM/CAT12) writes the forward field ``y_``: for every template voxel, the
native position it maps to. :func:`native_labels` inverts that field numerically at the native
voxels that hold tissue and looks up the atlas label there (nearest neighbour).
"""

from __future__ import annotations

import math

import torch

from vbmkit.errors import ImageError
from vbmkit.sampling import grid_sample

#: Native voxels processed at once (memory: ~100 bytes per voxel).
DEFAULT_CHUNK = 1 << 20


def fit_affine(field: torch.Tensor, *, step: int = 3) -> torch.Tensor:
    """Least-squares affine approximation of a dense field.

    Parameters
    ----------
    field : torch.Tensor
        (X, Y, Z, 3) target coordinates of every source voxel.
    step : int
        Use every ``step``-th voxel along each axis (the fit is smooth; 27x fewer points).

    Returns
    -------
    torch.Tensor
        (4, 4) float64 ``A`` with ``field[i, j, k] ~ A @ [i, j, k, 1]``.
    """
    sub = field[::step, ::step, ::step].reshape(-1, 3).double()
    axes = [torch.arange(0, n, step, dtype=torch.float64, device=field.device) for n in field.shape[:3]]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    design = torch.cat([ijk, torch.ones(len(ijk), 1, dtype=torch.float64, device=field.device)], dim=1)
    coef = torch.linalg.lstsq(design, sub).solution  # (4, 3)
    a = torch.eye(4, dtype=torch.float64, device=field.device)
    a[:3] = coef.T
    return a


def invert_points(field: torch.Tensor, points: torch.Tensor, *, iterations: int = 20,
                  tol: float = 0.05, affine: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Source voxel positions that ``field`` maps onto given target points.

    Parameters
    ----------
    field : torch.Tensor
        (X, Y, Z, 3) target voxel coordinates (e.g. native voxels) of every source voxel
        (e.g. template voxels).
    points : torch.Tensor
        (M, 3) target voxel coordinates to invert.
    iterations : int
        Largest number of steps.
    tol : float
        Largest accepted residual ``|field(t) - p|`` in target voxels.
    affine : (4, 4) tensor, optional
        The affine part of ``field`` (:func:`fit_affine`), when already known.

    Returns
    -------
    positions : torch.Tensor
        (M, 3) float64 source voxel coordinates ``t`` with ``field(t) ~ p``.
    ok : torch.Tensor
        (M,) bool: converged within ``tol`` and inside the source grid.

    Notes
    -----
    Started at ``A^{-1} p`` (``A`` the affine fit of the field, ``L`` its linear part), two
    steps ``t <- t - L^{-1} (field(t) - p)`` bring ``t`` near the solution robustly; then
    Newton steps ``t <- t - J(t)^{-1} (field(t) - p)`` with ``J`` the central-difference
    Jacobian of the field sampled at ``t`` (falling back to ``L`` where ``J`` is near-singular,
    steps clamped to 3 voxels per axis). Points stop once their residual is below ``tol / 10``.
    On a real subject's field (ds002748 sub-01, 1.5 mm template -> 0.87 mm native) all of
    200,000 sampled tissue voxels converged within 5 steps; with the affine Jacobian alone
    0.5 % had not after 30.
    """
    a = affine if affine is not None else fit_affine(field)
    a_inv = torch.linalg.inv(a)
    l_inv = a_inv[:3, :3]
    p = points.to(torch.float64)
    t = p @ l_inv.T + a_inv[:3, 3]
    # Sample only the non-linear part (border-extended) and add the affine part exactly, so
    # that positions at or just beyond the grid edge still follow the field's affine trend.
    axes = [torch.arange(n, dtype=torch.float64, device=field.device) for n in field.shape[:3]]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    nonlinear = (field.double() - (ijk @ a[:3, :3].T + a[:3, 3])).float()
    field_c = nonlinear.permute(3, 0, 1, 2)[None]
    # d field_i / d t_j by central differences, 9 channels (i major) for trilinear sampling
    jac = torch.stack(torch.gradient(field.float(), dim=(0, 1, 2)), dim=-1)  # (X, Y, Z, 3, 3)
    jac_c = jac.reshape(*field.shape[:3], 9).permute(3, 0, 1, 2)[None]

    def forward(pos: torch.Tensor) -> torch.Tensor:
        return pos @ a[:3, :3].T + a[:3, 3] + _sample9(field_c, pos)

    active = torch.arange(len(p), device=p.device)
    for it in range(iterations):
        r = forward(t[active]) - p[active]
        still = r.norm(dim=1) >= 0.1 * tol
        active, r = active[still], r[still]
        if active.numel() == 0:
            break
        step = r @ l_inv.T
        if it >= 2:  # after two robust affine steps: Newton with the local Jacobian
            j_loc = _sample9(jac_c, t[active]).view(-1, 3, 3)
            sol, info = torch.linalg.solve_ex(j_loc, r.unsqueeze(-1))
            good = (info == 0) & (torch.linalg.det(j_loc) > 1e-3 * abs(float(torch.det(a[:3, :3]))))
            step = torch.where(good[:, None], sol.squeeze(-1), step)
        t[active] = t[active] - step.clamp(-3.0, 3.0)
    resid = (forward(t) - p).norm(dim=1)
    sizes = torch.tensor(field.shape[:3], dtype=torch.float64, device=field.device)
    inside = ((t > -0.5) & (t < sizes - 0.5)).all(dim=1)
    return t, (resid < tol) & inside


def _sample9(field_c: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Trilinear values of a (1, C, X, Y, Z) field at (M, 3) voxel positions -> (M, C)."""
    sizes = torch.tensor(field_c.shape[2:], dtype=pos.dtype, device=pos.device)
    norm = 2.0 * pos / (sizes - 1).clamp(min=1) - 1.0
    grid = norm.flip(-1).view(1, -1, 1, 1, 3).to(field_c.dtype)
    out = grid_sample(field_c, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(field_c.shape[1], -1).T.to(pos.dtype)


def native_labels(labels: torch.Tensor, field: torch.Tensor, native_shape: tuple[int, int, int], *,
                  mask: torch.Tensor | None = None, iterations: int = 20, tol: float = 0.05,
                  chunk: int | None = None) -> tuple[torch.Tensor, int]:
    """Atlas labels on the native grid, through the inverse of a template -> native field.

    Parameters
    ----------
    labels : torch.Tensor
        (X, Y, Z) integer atlas on the template grid of ``field``.
    field : torch.Tensor
        (X, Y, Z, 3) native voxel coordinates of every template voxel (``y_`` in native voxels).
    native_shape : tuple of int
        (Xn, Yn, Zn) native grid.
    mask : torch.Tensor, optional
        (Xn, Yn, Zn) bool: native voxels to label (e.g. where there is tissue); all when omitted.
    iterations, tol
        See :func:`invert_points`.
    chunk : int, optional
        Native voxels per step (default :data:`DEFAULT_CHUNK`).

    Returns
    -------
    labels_native : torch.Tensor
        (Xn, Yn, Zn) int64, 0 outside the mask, outside the template or where the inversion
        did not converge.
    n_failed : int
        Masked voxels inside the template's reach whose inversion did not converge.
    """
    if labels.ndim != 3 or labels.is_floating_point():
        raise ImageError(f"labels: expected an (X, Y, Z) integer tensor; got {labels.dtype} {tuple(labels.shape)}")
    if field.shape != (*labels.shape, 3):
        raise ImageError(f"field: expected shape {(*labels.shape, 3)} like the atlas; got {tuple(field.shape)}")
    chunk = chunk if chunk is not None else DEFAULT_CHUNK
    dev = field.device
    out = torch.zeros(native_shape, dtype=torch.int64, device=dev)
    flat_out = out.view(-1)
    m = mask.reshape(-1).to(dev) if mask is not None else torch.ones(out.numel(), dtype=torch.bool, device=dev)
    where = m.nonzero().squeeze(1)
    a = fit_affine(field)
    lab = labels.to(dev, torch.int64)
    sizes = torch.tensor(labels.shape, device=dev)
    nz, nyz = native_shape[2], native_shape[1] * native_shape[2]
    failed = 0
    for start in range(0, where.numel(), chunk):
        idx = where[start:start + chunk]
        pts = torch.stack([idx // nyz, (idx // nz) % native_shape[1], idx % nz], dim=1).to(torch.float64)
        t, ok = invert_points(field, pts, iterations=iterations, tol=tol, affine=a)
        vox = torch.floor(t + 0.5).long()
        reach = ((vox >= 0) & (vox < sizes)).all(dim=1)
        failed += int((reach & ~ok).sum())
        vox = vox.clamp(min=torch.zeros_like(sizes), max=sizes - 1)
        values = lab[vox[:, 0], vox[:, 1], vox[:, 2]]
        flat_out[idx] = torch.where(ok, values, torch.zeros_like(values))
    return out, failed


def _unique_first(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sorted unique values of a 1-D tensor, the index of one occurrence of each, the inverse."""
    values, inverse = torch.unique(key, sorted=True, return_inverse=True)
    first = torch.empty(values.numel(), dtype=torch.int64)
    first.scatter_(0, inverse, torch.arange(key.numel(), dtype=torch.int64))
    return values, first, inverse


def native_labels_many(labels: list[torch.Tensor], field: torch.Tensor, native_shape: tuple[int, int, int], *,
                       mask: torch.Tensor | None = None, iterations: int = 20,
                       tol: float = 0.05) -> tuple[list[torch.Tensor], int]:
    """Several atlases on one template grid carried into native space with one inversion.

    Parameters
    ----------
    labels : list of torch.Tensor
        A (X, Y, Z) integer atlas per entry, all on the template grid of ``field``.
    field, native_shape, mask, iterations, tol
        As for :func:`native_labels`.

    Returns
    -------
    labels_native : list of torch.Tensor
        (Xn, Yn, Zn) int64 per atlas, as :func:`native_labels` would give for each.
    n_failed : int
        As for :func:`native_labels`.

    Notes
    -----
    Every template voxel gets the code of its tuple of labels (``torch.unique`` over the
    stacked atlases, 0 for the all-background tuple), the code image is carried into native
    space once by :func:`native_labels` (nearest neighbour, so each native voxel takes one
    template voxel's whole tuple), and each atlas's label is looked up from the code.
    """
    if not labels:
        raise ImageError("labels: expected at least one atlas; got none")
    stacked = torch.stack([lab.to(torch.int64).reshape(-1) for lab in labels], dim=1)  # (V, A)
    stacked = torch.cat([torch.zeros(1, stacked.shape[1], dtype=torch.int64), stacked.clamp(min=0)])
    radix = [int(stacked[:, a].max()) + 1 for a in range(stacked.shape[1])]
    if math.prod(radix) < 2 ** 62:  # one int64 key per tuple: a 1-D unique (sort) is ~10x faster
        key = torch.zeros(stacked.shape[0], dtype=torch.int64)
        for a, r in enumerate(radix):
            key = key * r + stacked[:, a]
        _, first, code = _unique_first(key)
        combos = stacked[first]
    else:
        combos, code = torch.unique(stacked, dim=0, return_inverse=True)
    # the all-zero tuple (prepended, the smallest) has code 0: background
    codes = code[1:].reshape(labels[0].shape)
    native, failed = native_labels(codes.to(field.device), field, native_shape, mask=mask,
                                   iterations=iterations, tol=tol)
    table = combos.to(native.device)
    return [table[:, a][native] for a in range(len(labels))], failed
