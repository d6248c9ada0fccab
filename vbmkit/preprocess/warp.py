"""Dense deformations in voxel units: identity grids, scaling and squaring, composition, warping.

Conventions
-----------
A *deformation* ``phi`` is a (X, Y, Z, 3) or (B, X, Y, Z, 3) tensor holding, for each voxel of
the output grid, a position in voxel coordinates (x, y, z order) of the grid it samples from.
A *displacement* ``u`` is (B, 3, X, Y, Z) with ``phi = identity + u`` (channels x, y, z, in
voxels). A stationary *velocity* ``v`` has the displacement layout. ``grid_sample`` wants
normalised (z, y, x) coordinates with ``align_corners=True``; :func:`to_sampling_grid` is the
one place that converts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError
from vbmkit.preprocess.smooth import gaussian_kernel1d
from vbmkit.sampling import grid_sample


def identity_grid(shape: tuple[int, int, int], *, device=None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Voxel coordinates of every voxel: (X, Y, Z, 3), last axis (x, y, z), in voxels."""
    axes = [torch.arange(int(n), device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def identity_grid_mm(shape: tuple[int, int, int], affine, *, device=None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """World coordinates (mm) of every voxel of a grid with voxel->mm ``affine``: (X, Y, Z, 3)."""
    a = torch.as_tensor(affine, dtype=torch.float64, device=device)
    ijk = identity_grid(shape, device=device, dtype=torch.float64)
    return (ijk @ a[:3, :3].T + a[:3, 3]).to(dtype)


def _scale_zyx(source_shape, *, device, dtype) -> torch.Tensor:
    sizes = torch.as_tensor([max(int(n) - 1, 1) for n in source_shape], device=device, dtype=dtype)
    return (2.0 / sizes).flip(0)  # (z, y, x) order


def to_sampling_grid(deformation: torch.Tensor, source_shape: tuple[int, int, int]) -> torch.Tensor:
    """Convert voxel positions (B, X, Y, Z, 3) (x, y, z) into ``grid_sample`` coordinates.

    Returns (B, X, Y, Z, 3) normalised to [-1, 1] over ``source_shape`` in (z, y, x) order,
    matching ``align_corners=True``.
    """
    scale = _scale_zyx(source_shape, device=deformation.device, dtype=deformation.dtype)
    return deformation.flip(-1) * scale - 1.0


def displacement_to_deformation(u: torch.Tensor) -> torch.Tensor:
    """(B, 3, X, Y, Z) displacement -> (B, X, Y, Z, 3) positions ``identity + u`` in voxels."""
    _check_field(u, "u")
    idg = identity_grid(u.shape[2:], device=u.device, dtype=u.dtype)
    return idg + u.permute(0, 2, 3, 4, 1)


def deformation_to_displacement(phi: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z, 3) or (X, Y, Z, 3) positions -> (B, 3, X, Y, Z) displacement ``phi - identity``."""
    p = phi[None] if phi.ndim == 4 else phi
    if p.ndim != 5 or p.shape[-1] != 3:
        raise ImageError(f"deformation: expected (B, X, Y, Z, 3) or (X, Y, Z, 3); got {tuple(phi.shape)}")
    idg = identity_grid(p.shape[1:4], device=p.device, dtype=p.dtype)
    return (p - idg).permute(0, 4, 1, 2, 3)


def _check_field(u: torch.Tensor, name: str) -> None:
    if u.ndim != 5 or u.shape[1] != 3:
        raise ImageError(f"{name}: expected a (B, 3, X, Y, Z) displacement in voxels; got {tuple(u.shape)}")


def warp(image: torch.Tensor, deformation: torch.Tensor, *, mode: str = "bilinear",
         padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``image`` at the voxel positions of ``deformation`` (pull interpolation).

    Parameters
    ----------
    image : torch.Tensor
        (B, C, X', Y', Z') values on the source grid.
    deformation : torch.Tensor
        (B, X, Y, Z, 3) or (X, Y, Z, 3) positions in source voxel coordinates (x, y, z); a batch
        of one is broadcast over ``B``.
    mode : {"bilinear", "nearest"}
        Trilinear interpolation or nearest neighbour.
    padding_mode : {"zeros", "border", "reflection"}
        Value outside the source field of view (zero for tissue maps, border for fields).

    Returns
    -------
    torch.Tensor
        (B, C, X, Y, Z) in the dtype of ``image``.
    """
    if image.ndim != 5:
        raise ImageError(f"warp: expected image (B, C, X, Y, Z); got {tuple(image.shape)}")
    phi = deformation[None] if deformation.ndim == 4 else deformation
    if phi.ndim != 5 or phi.shape[-1] != 3:
        raise ImageError(f"warp: expected deformation (B, X, Y, Z, 3); got {tuple(deformation.shape)}")
    grid = to_sampling_grid(phi.to(image.dtype), image.shape[2:])
    if grid.shape[0] != image.shape[0]:
        grid = grid.expand(image.shape[0], *grid.shape[1:])
    return grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


class _FieldSampler:
    """Identity sampling grid and unit conversions of one grid shape, for repeated use.

    Fields are composed in ``grid_sample`` units (channels (z, y, x), normalised), so that
    each squaring costs one addition and one ``grid_sample``; :meth:`to_norm` and
    :meth:`from_norm` convert from and to voxel units (x, y, z).
    """

    def __init__(self, shape, *, device, dtype) -> None:
        self.shape = tuple(int(n) for n in shape)
        theta = torch.eye(4, device=device, dtype=dtype)[None, :3]
        self.id_norm = F.affine_grid(theta, [1, 3, *self.shape], align_corners=True)
        self.scale = _scale_zyx(self.shape, device=device, dtype=dtype).view(1, 3, 1, 1, 1)

    def to_norm(self, u: torch.Tensor) -> torch.Tensor:
        return u.flip(1) * self.scale

    def from_norm(self, un: torch.Tensor) -> torch.Tensor:
        return (un / self.scale).flip(1)

    def sample_norm(self, x: torch.Tensor, un: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
        """x sampled at identity + un, ``un`` (B, 3, X, Y, Z) in normalised (z, y, x) units."""
        grid = self.id_norm + un.permute(0, 2, 3, 4, 1)
        return grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)

    def sample(self, x: torch.Tensor, u: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
        """x sampled at identity + u, ``u`` (B, 3, X, Y, Z) in voxels (x, y, z)."""
        return self.sample_norm(x, self.to_norm(u), padding_mode)

    def exp_norm(self, v: torch.Tensor, steps: int) -> torch.Tensor:
        """Scaling and squaring of a voxel-unit velocity; returns the displacement normalised."""
        un = self.to_norm(v) / (2.0 ** int(steps))
        for _ in range(int(steps)):
            un = un + self.sample_norm(un, un)
        return un


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Displacement of ``phi_outer o phi_inner`` (apply ``inner`` first).

    Parameters
    ----------
    outer, inner : torch.Tensor
        (B, 3, X, Y, Z) displacements in voxels on the same grid.

    Returns
    -------
    torch.Tensor
        (B, 3, X, Y, Z): ``u(x) = u_inner(x) + u_outer(x + u_inner(x))``; outside the field
        of view ``u_outer`` is extended by its border values.
    """
    _check_field(outer, "outer")
    _check_field(inner, "inner")
    if outer.shape != inner.shape:
        raise ImageError(f"compose: outer {tuple(outer.shape)} and inner {tuple(inner.shape)} differ in shape")
    s = _FieldSampler(inner.shape[2:], device=inner.device, dtype=inner.dtype)
    return inner + s.sample(outer, inner)


def integrate_velocity(v: torch.Tensor, *, steps: int = 7) -> torch.Tensor:
    """Exponentiate a stationary velocity field by scaling and squaring.

    Parameters
    ----------
    v : torch.Tensor
        (B, 3, X, Y, Z) velocity in voxels (x, y, z channels).
    steps : int
        Number of squarings N (7, as deepmriprep and torchreg): the field is divided by 2^N and
        composed with itself N times.

    Returns
    -------
    torch.Tensor
        (B, 3, X, Y, Z) displacement ``u`` of ``phi = exp(v) = identity + u`` in voxels.

    Notes
    -----
    ``exp(v) = (exp(v / 2^N))^(2^N)`` and ``exp(v / 2^N) ~ identity + v / 2^N`` for small
    fields; each squaring is ``u <- u + u o (identity + u)`` with trilinear interpolation and
    border extension. ``exp(-v)`` is the inverse of ``exp(v)`` up to interpolation error.
    Differentiable (autograd passes through ``grid_sample``).
    """
    _check_field(v, "v")
    if int(steps) < 0:
        raise ImageError(f"integrate_velocity: steps must be >= 0; got {steps}")
    s = _FieldSampler(v.shape[2:], device=v.device, dtype=v.dtype)
    return s.from_norm(s.exp_norm(v, int(steps)))


def resize_field(u: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Resample a (B, 3, X, Y, Z) voxel-unit field to ``shape`` and rescale its voxel units.

    The two grids span the same field of view with ``align_corners=True`` (first and last
    voxel centres coincide), so one voxel of the old grid is ``(n_new - 1) / (n_old - 1)``
    voxels of the new one along each axis.
    """
    _check_field(u, "u")
    shape = tuple(int(n) for n in shape)
    if tuple(u.shape[2:]) == shape:
        return u
    out = F.interpolate(u, size=shape, mode="trilinear", align_corners=True)
    ratio = [(n - 1) / max(o - 1, 1) for n, o in zip(shape, u.shape[2:], strict=True)]
    return out * torch.as_tensor(ratio, device=u.device, dtype=u.dtype).view(1, 3, 1, 1, 1)


def blur(x: torch.Tensor, sigma_vox: float | tuple[float, float, float]) -> torch.Tensor:
    """Separable Gaussian on (B, C, X, Y, Z), ``sigma_vox`` voxels (per axis), borders replicated.

    Kernels are truncated at 3 sigma. Written as a weighted sum of shifted views, which on CPU
    is several times faster than ``conv3d`` with a 1-D kernel.
    """
    sig = (float(sigma_vox),) * 3 if isinstance(sigma_vox, (int, float)) else tuple(map(float, sigma_vox))
    out = x
    for axis, s in zip((2, 3, 4), sig, strict=True):
        if s <= 0:
            continue
        k = gaussian_kernel1d(s, truncate=3.0, dtype=torch.float64).tolist()
        r, n = len(k) // 2, out.shape[axis]
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (4 - axis)] = pad[2 * (4 - axis) + 1] = r
        xp = F.pad(out, pad, mode="replicate")
        acc = xp.narrow(axis, 0, n) * k[0]
        for i in range(1, len(k)):
            acc.add_(xp.narrow(axis, i, n), alpha=k[i])
        out = acc
    return out
