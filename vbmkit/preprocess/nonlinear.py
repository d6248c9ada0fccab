"""Diffeomorphic registration of tissue maps to a template: symmetric log-domain demons.

A stationary velocity field ``v`` on the template grid is optimised coarse to fine; the
deformation is ``phi = exp(v)`` by scaling and squaring (7 squarings, as deepmriprep). The
similarity is symmetric as in SyN: the subject warped half-way forward, ``m o exp(v/2)``, is
compared with the template warped half-way back, ``f o exp(-v/2)``, so neither image is
privileged and ``exp(-v)`` is the inverse map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError
from vbmkit.preprocess.warp import (
    _FieldSampler,
    blur,
    displacement_to_deformation,
    integrate_velocity,
    resize_field,
)


@dataclass(frozen=True)
class NonlinearResult:
    """Result of :func:`register_nonlinear`.

    Attributes
    ----------
    velocity : torch.Tensor
        (3, X, Y, Z) float32 stationary velocity in voxels of the template grid (x, y, z).
    deformation : torch.Tensor or None
        (X, Y, Z, 3) ``phi = exp(v)``: for each template voxel its position (template voxel
        coordinates, x, y, z) in the affinely aligned subject image; ``warp(moving, phi)`` is
        the subject in template space (None when not asked for: ``compute_forward=False``).
    inverse : torch.Tensor or None
        (X, Y, Z, 3) ``exp(-v)``, the inverse map (subject-aligned voxel -> template voxel).
    loss_history : list of float
        Symmetric mean squared difference at each iteration, all scales in order.
    """

    velocity: torch.Tensor
    deformation: torch.Tensor | None
    inverse: torch.Tensor | None
    loss_history: list[float] = field(default_factory=list)


def check_image_pair(moving: torch.Tensor, fixed: torch.Tensor, *, caller: str) -> None:
    """Raise ImageError unless both are finite (C, X, Y, Z) tensors of one shape, axes >= 4 voxels."""
    if moving.ndim != 4 or fixed.ndim != 4 or moving.shape != fixed.shape:
        raise ImageError(f"{caller}: moving and fixed must be (C, X, Y, Z) of equal shape; got "
                         f"{tuple(moving.shape)} and {tuple(fixed.shape)}")
    if min(moving.shape[1:]) < 4:
        raise ImageError(f"{caller}: every axis needs >= 4 voxels; got {tuple(moving.shape[1:])}")
    if not (torch.isfinite(moving).all() and torch.isfinite(fixed).all()):
        raise ImageError(f"{caller}: moving or fixed contains NaN or Inf values")


def _downsample(img: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(1, C, X, Y, Z) -> (1, C, *shape), Gaussian anti-aliasing then trilinear (align_corners)."""
    if tuple(img.shape[2:]) == tuple(shape):
        return img
    factor = max(n / m for n, m in zip(img.shape[2:], shape, strict=True))
    sm = blur(img, 0.5 * factor)  # sigma of half the sampling step
    return F.interpolate(sm, size=shape, mode="trilinear", align_corners=True)


def _gradient(img: torch.Tensor) -> torch.Tensor:
    """(1, C, X, Y, Z) -> (1, C, 3, X, Y, Z) central differences in voxels."""
    return torch.stack(torch.gradient(img, dim=(2, 3, 4)), dim=2)


def _demons_step(r: torch.Tensor, g: torch.Tensor, max_step: float) -> torch.Tensor:
    """Gauss-Newton step ``-(sum_c r_c g_c) / (sum_c |g_c|^2 + sum_c r_c^2 / K)``, (1, 3, X, Y, Z).

    ``K = 4 max_step^2`` bounds the step length by ``max_step`` voxels (Thirion/Vercauteren).
    """
    num = (r[:, :, None] * g).sum(1)  # (1, 3, X, Y, Z)
    den = (g * g).sum((1, 2)) + (r * r).sum(1) / (4.0 * max_step ** 2)
    return -num / den.clamp_min(1e-9)[:, None]


def register_nonlinear(
    moving: torch.Tensor,
    fixed: torch.Tensor,
    *,
    scales: tuple[int, ...] = (4, 2, 1),
    iterations: tuple[int, ...] = (40, 30, 10),
    regularisation: float = 0.7,
    fluid_sigma: float = 0.7,
    max_step: float = 0.5,
    steps: int = 7,
    symmetric: bool = True,
    compute_inverse: bool = True,
    compute_forward: bool = True,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> NonlinearResult:
    """Register tissue maps ``moving`` onto ``fixed`` with a diffeomorphism ``exp(v)``.

    Parameters
    ----------
    moving : torch.Tensor
        (C, X, Y, Z) subject GM/WM probabilities (C = 2), already resampled onto the template
        grid by the affine registration.
    fixed : torch.Tensor
        (C, X, Y, Z) template GM/WM (the first two volumes of Template_4_GS).
    scales : tuple of int
        Downsampling factor per level, coarse to fine (1 = template resolution).
    iterations : tuple of int
        Updates per level.
    regularisation : float
        Standard deviation, in voxels of each level, of the Gaussian applied to ``v`` after
        each update (diffusion regularisation; larger = smoother, more rigid).
    fluid_sigma : float
        Standard deviation in voxels of the Gaussian applied to each update (fluid part).
    max_step : float
        Largest update per iteration in voxels of the level.
    steps : int
        Squarings of the scaling-and-squaring integration (7).
    symmetric : bool
        Compare ``m o exp(v/2)`` with ``f o exp(-v/2)`` (SyN-like); else ``m o exp(v)`` with ``f``.
    compute_inverse : bool
        Also integrate ``exp(-v)`` at full resolution.
    compute_forward : bool
        Integrate ``exp(v)`` at full resolution (False: ``deformation`` is None, for callers that
        need only the inverse).
    device : str or torch.device
        Where to compute.
    progress : callable (done, total), optional
        Called after each iteration.

    Returns
    -------
    NonlinearResult

    Notes
    -----
    Each iteration (symmetric case): ``W_m = m o exp(v/2)``, ``W_f = f o exp(-v/2)``,
    residual ``r = W_m - W_f`` per channel, ``g = (grad W_m + grad W_f) / 2`` (as
    ``d r / d v`` to first order), Gauss-Newton step ``du = -sum_c r_c g_c / (sum_c |g_c|^2 +
    sum_c r_c^2 / K)`` (bounded by ``max_step``), ``v <- G_reg * (v + G_fluid * du)``. The
    Gaussian ``G_reg`` is the heat-equation (membrane-energy gradient-flow) regulariser of
    diffeomorphic demons (Vercauteren et al. 2009); with v smooth and steps small relative to
    its scale the exponential has a positive Jacobian everywhere.
    """
    check_image_pair(moving, fixed, caller="register_nonlinear")
    if len(scales) != len(iterations) or len(scales) == 0 or any(int(s) < 1 for s in scales):
        raise ImageError(f"register_nonlinear: scales {scales} (each >= 1) and iterations {iterations} "
                         "must be non-empty and of equal length")
    dev = torch.device(device)
    mov = moving.to(dev, torch.float32)[None]
    fix = fixed.to(dev, torch.float32)[None]
    full = tuple(int(n) for n in moving.shape[1:])
    v: torch.Tensor | None = None
    history: list[float] = []
    total, done = int(sum(iterations)), 0
    for scale, n_iter in zip(scales, iterations, strict=True):
        shape = tuple(max(4, int(round(n / scale))) for n in full)
        m_s, f_s = _downsample(mov, shape), _downsample(fix, shape)
        v = torch.zeros(1, 3, *shape, device=dev) if v is None else resize_field(v, shape)
        sampler = _FieldSampler(shape, device=dev, dtype=torch.float32)
        for _ in range(int(n_iter)):
            if symmetric:
                w_m = sampler.sample_norm(m_s, sampler.exp_norm(0.5 * v, steps), padding_mode="zeros")
                w_f = sampler.sample_norm(f_s, sampler.exp_norm(-0.5 * v, steps), padding_mode="zeros")
                g = 0.5 * _gradient(w_m + w_f)  # d r / d v to first order
            else:
                w_m = sampler.sample_norm(m_s, sampler.exp_norm(v, steps), padding_mode="zeros")
                w_f = f_s
                g = _gradient(w_m)
            r = w_m - w_f
            history.append(float((r * r).mean()))
            du = blur(_demons_step(r, g, max_step), fluid_sigma)
            v = blur(v + du, regularisation)
            done += 1
            if progress is not None:
                progress(done, total)
    v = resize_field(v, full)
    phi = displacement_to_deformation(integrate_velocity(v, steps=steps))[0] if compute_forward else None
    inv = displacement_to_deformation(integrate_velocity(-v, steps=steps))[0] if compute_inverse else None
    return NonlinearResult(velocity=v[0], deformation=phi, inverse=inv, loss_history=history)
