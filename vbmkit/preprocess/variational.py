"""Diffeomorphic registration as a variational problem: symmetric SSD + lambda * regulariser in mm.

The stationary velocity ``v`` minimises

    E(v) = mean_x sum_c (m_c o exp(v/2) - f_c o exp(-v/2))^2 + lambda * R(v),

``R`` a mix of the absolute, membrane, bending and linear-elastic energies of ``v`` in mm, with
SPM12 Shooting's default weights (``spm_shoot_defaults.m``: ``rparam = [1e-4 0.001 0.2 0.05
0.2]``). Means over voxels approximate integrals over the field of view divided by its volume,
so ``E`` does not depend on the grid; the voxel size enters every finite difference, so the
same ``lambda`` means the same physical smoothness at every level and every resolution.
Optimised coarse to fine by preconditioned gradient descent with backtracking (each accepted
step lowers ``E``); ``exp`` by scaling and squaring (:func:`vbmkit.preprocess.warp.integrate_velocity`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError
from vbmkit.preprocess.nonlinear import NonlinearResult, _downsample, _gradient, check_image_pair
from vbmkit.preprocess.warp import (
    _FieldSampler,
    displacement_to_deformation,
    integrate_velocity,
    resize_field,
)

#: SPM12 Shooting defaults (toolbox/Shoot/spm_shoot_defaults.m, ``d.rparam``):
#: absolute, membrane, bending, linear-elastic mu, linear-elastic lambda.
SHOOT_WEIGHTS = (1e-4, 1e-3, 0.2, 0.05, 0.2)


def _check_weights(weights) -> tuple[float, float, float, float, float]:
    w = tuple(float(x) for x in weights)
    if len(w) != 5 or any(not (x >= 0) for x in w) or w[1] + w[2] + w[3] == 0:
        raise ImageError("weights: expected 5 non-negative numbers (absolute, membrane, bending, mu, "
                         f"lambda) with membrane, bending or mu > 0; got {tuple(weights)}")
    return w  # type: ignore[return-value]


def _second_difference(v: torch.Tensor, axis: int) -> torch.Tensor:
    """``v(x - e) - 2 v(x) + v(x + e)`` along spatial ``axis`` (0..2) on the inner voxels."""
    dim = 2 + axis
    n = v.shape[dim]
    out = v.narrow(dim, 0, n - 2) - 2 * v.narrow(dim, 1, n - 2) + v.narrow(dim, 2, n - 2)
    for other in range(2, 5):
        if other != dim:
            out = out.narrow(other, 1, out.shape[other] - 2)
    return out


def _check_field(v: torch.Tensor, voxel_size_mm, caller: str) -> list[float]:
    if v.ndim != 5 or v.shape[1] != 3 or min(v.shape[2:]) < 3:
        raise ImageError(f"{caller}: expected a (B, 3, X, Y, Z) field with every axis >= 3; "
                         f"got {tuple(v.shape)}")
    h = [float(s) for s in voxel_size_mm]
    if len(h) != 3 or min(h) <= 0:
        raise ImageError(f"{caller}: voxel_size_mm must be 3 positive numbers; got {voxel_size_mm}")
    return h


def _derivatives(v: torch.Tensor, h: list[float]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Forward differences ``d[j][:, i] = d_j v_i`` (mm^-1, on the first ``n - 1`` voxels of
    every axis) and the Laplacian of each channel (mm^-2, on the inner voxels)."""
    crop = [n - 1 for n in v.shape[2:]]
    d = [(v.narrow(2 + j, 1, v.shape[2 + j] - 1) - v.narrow(2 + j, 0, v.shape[2 + j] - 1)) / h[j]
         for j in range(3)]
    d = [dj[:, :, : crop[0], : crop[1], : crop[2]] for dj in d]
    lap = sum(_second_difference(v, j) / h[j] ** 2 for j in range(3))
    return d, lap


def _regulariser(v: torch.Tensor, h: list[float], weights) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """``R(v)`` (scalar tensor) and a function returning ``dR/dv`` from the same derivatives."""
    a, m, b, mu, lam = weights
    d, lap = _derivatives(v, h)
    energy = a * (v * v).sum(1).mean()
    energy = energy + m * sum((dj * dj).sum(1).mean() for dj in d)
    energy = energy + b * (lap * lap).sum(1).mean()
    div = d[0][:, 0] + d[1][:, 1] + d[2][:, 2]
    if mu > 0 or lam > 0:
        strain = sum((0.5 * (d[j][:, i] + d[i][:, j])) ** 2 for i in range(3) for j in range(3))
        energy = energy + mu * strain.mean() + 0.5 * lam * (div * div).mean()

    def gradient() -> torch.Tensor:
        shape = v.shape[2:]
        n_all = float(v.shape[0] * math.prod(shape))
        n_crop = float(v.shape[0] * math.prod(n - 1 for n in shape))
        n_inner = float(v.shape[0] * math.prod(n - 2 for n in shape))
        grad = (2.0 * a / n_all) * v
        for j in range(3):
            # dE/d(d_j v_i): membrane 2 m d_j v_i, strain 2 mu e_ij, divergence lam div (i = j)
            q = (2.0 * m) * d[j]
            if mu > 0:
                q = q + mu * (d[j] + torch.stack([d[i][:, j] for i in range(3)], dim=1))
            if lam > 0:
                q[:, j] += lam * div
            grad = grad + _difference_adjoint(q, j, shape) / (n_crop * h[j])
        if b > 0:
            full = F.pad(lap, (1, 1, 1, 1, 1, 1)) * (2.0 * b / n_inner)  # zero outside the inner voxels
            for j in range(3):
                dim = 2 + j
                n = full.shape[dim]
                second = -2.0 * full
                second.narrow(dim, 1, n - 1).add_(full.narrow(dim, 0, n - 1))
                second.narrow(dim, 0, n - 1).add_(full.narrow(dim, 1, n - 1))
                grad = grad + second / h[j] ** 2
        return grad

    return energy, gradient


def regulariser_energy(velocity_mm: torch.Tensor, voxel_size_mm, *,
                       weights=SHOOT_WEIGHTS) -> torch.Tensor:
    """Regularisation energy ``R(v)`` of a velocity (or displacement) field in mm.

    Parameters
    ----------
    velocity_mm : torch.Tensor
        (B, 3, X, Y, Z) field in mm (channels x, y, z), each axis >= 3 voxels.
    voxel_size_mm : sequence of 3 float
        Voxel spacing along x, y, z in mm.
    weights : sequence of 5 float
        ``(a, m, b, mu, lam)``: absolute, membrane, bending, linear-elastic mu and lambda
        (default SPM12 Shooting's ``rparam``).

    Returns
    -------
    torch.Tensor
        Scalar (differentiable): ``a <|v|^2> + m <sum_ij (d_j v_i)^2> + b <sum_i (lap v_i)^2>
        + mu <sum_ij e_ij^2> + lam/2 <(div v)^2>``, ``e = (Dv + Dv^T) / 2``, ``<.>`` the mean
        over voxels (first derivatives by forward differences, the Laplacian by the 3-point
        stencil, both divided by the spacing in mm). Units: mm^2 (a), dimensionless (m, mu,
        lam), mm^-2 (b). :func:`regulariser_gradient` is its gradient.
    """
    w = _check_weights(weights)
    h = _check_field(velocity_mm, voxel_size_mm, "regulariser_energy")
    return _regulariser(velocity_mm, h, w)[0]


def _difference_adjoint(q: torch.Tensor, axis: int, shape) -> torch.Tensor:
    """Adjoint of ``v -> d_axis v`` (forward difference cropped to the first ``n - 1`` voxels of
    every axis, unit spacing): ``q`` zero-extended to ``shape``, then ``q(x - e) - q(x)``."""
    x, y, z = (int(n) for n in shape)
    qf = F.pad(q, (0, z - q.shape[4], 0, y - q.shape[3], 0, x - q.shape[2]))
    dim = 2 + axis
    n = qf.shape[dim]
    out = -qf
    out.narrow(dim, 1, n - 1).add_(qf.narrow(dim, 0, n - 1))
    return out


def regulariser_gradient(velocity_mm: torch.Tensor, voxel_size_mm, *,
                         weights=SHOOT_WEIGHTS) -> torch.Tensor:
    """Gradient ``dR/dv`` of :func:`regulariser_energy` with respect to the field in mm.

    ``R`` is a quadratic form, so its gradient is a fixed linear operator applied to ``v``:
    the transposed finite differences applied to the derivatives of the energy density. It
    equals autograd's gradient of :func:`regulariser_energy` to rounding, in about half the
    time and without keeping a graph.

    Parameters
    ----------
    velocity_mm : torch.Tensor
        (B, 3, X, Y, Z) field in mm, each axis >= 3 voxels.
    voxel_size_mm : sequence of 3 float
        Voxel spacing along x, y, z in mm.
    weights : sequence of 5 float
        As :func:`regulariser_energy`.

    Returns
    -------
    torch.Tensor
        (B, 3, X, Y, Z) in mm^-1 (units of ``R`` per mm).
    """
    w = _check_weights(weights)
    h = _check_field(velocity_mm, voxel_size_mm, "regulariser_gradient")
    return _regulariser(velocity_mm, h, w)[1]()


def _spectrum(shape, h, weights, lam_reg: float, device) -> torch.Tensor:
    """Per-voxel Hessian of ``N lambda R`` in Fourier space (rfftn layout), elastic terms
    folded into the membrane part (an approximation: it only preconditions)."""
    a, m, b, mu, lam = weights
    s = 0.0
    for j, n in enumerate(shape):
        k = torch.fft.fftfreq(n, device=device) if j < 2 else torch.fft.rfftfreq(n, device=device)
        sj = (2 - 2 * torch.cos(2 * torch.pi * k)) / h[j] ** 2
        view = [1, 1, 1]
        view[j] = -1
        s = s + sj.view(*view)
    return 2.0 * lam_reg * (a + (m + 0.5 * mu + 0.5 * lam) * s + b * s * s)


class _Level:
    """One level's grids: images on ``shape``, the velocity on ``vshape`` (the same or coarser).

    A coarser velocity is exponentiated on its own grid; the displacement (normalised units,
    the same on every grid) is then interpolated trilinearly onto the image grid, and a
    gradient on the image grid is brought back by the adjoint of that interpolation.
    """

    def __init__(self, shape, vshape, device) -> None:
        self.shape, self.vshape = shape, vshape
        self.image = _FieldSampler(shape, device=device, dtype=torch.float32)
        self.velocity = self.image if vshape == shape else _FieldSampler(vshape, device=device, dtype=torch.float32)
        self.ratio = math.prod(vshape) / math.prod(shape)

    def exp_norm(self, vel: torch.Tensor, steps: int) -> torch.Tensor:
        un = self.velocity.exp_norm(vel, steps)
        if self.vshape == self.shape:
            return un
        return F.interpolate(un, size=self.shape, mode="trilinear", align_corners=True)

    def restrict(self, x: torch.Tensor) -> torch.Tensor:
        """Per-voxel gradient on the image grid -> on the velocity grid (adjoint of the
        interpolation, times voxels of the velocity grid per image voxel)."""
        if self.vshape == self.shape:
            return x
        with torch.enable_grad():
            leaf = torch.zeros(x.shape[0], x.shape[1], *self.vshape, device=x.device, dtype=x.dtype,
                               requires_grad=True)
            up = F.interpolate(leaf, size=self.shape, mode="trilinear", align_corners=True)
            (g,) = torch.autograd.grad(up, leaf, grad_outputs=x)
        return g * self.ratio


def _energy(vel, level: _Level, m_s, f_s, hv, h, lam_reg, *, weights, steps):
    """E(v) at one level (float), the two half-way warped images (1, C, X, Y, Z) and a function
    returning ``dR/dv`` (v in mm) at ``vel`` (:func:`regulariser_gradient`, called only for the
    steps that are accepted). ``hv``, ``h``: spacing of the velocity grid in mm."""
    w_m = level.image.sample_norm(m_s, level.exp_norm(0.5 * vel, steps), padding_mode="zeros")
    w_f = level.image.sample_norm(f_s, level.exp_norm(-0.5 * vel, steps), padding_mode="zeros")
    data = ((w_m - w_f) ** 2).sum(1).mean()
    reg, reg_gradient = _regulariser(vel * hv, h, weights)
    return float(data + lam_reg * reg), w_m, w_f, reg_gradient


def _velocity_levels(levels, velocity_levels) -> tuple[int, ...]:
    if velocity_levels is None:
        return tuple(int(s) for s in levels)
    out = tuple(int(s) for s in velocity_levels)
    if len(out) != len(levels) or any(v < int(s) for v, s in zip(out, levels, strict=False)):
        raise ImageError(f"register_variational: velocity_levels {tuple(velocity_levels)} must give one factor per "
                         f"level, each >= that level's image factor in levels {tuple(levels)}")
    return out


def _check_inputs(moving, fixed, voxel_size_mm, levels, lambdas, iterations):
    check_image_pair(moving, fixed, caller="register_variational")
    vs = tuple(float(s) for s in voxel_size_mm)
    if len(vs) != 3 or min(vs) <= 0:
        raise ImageError(f"register_variational: voxel_size_mm must be 3 positive numbers (mm); got {voxel_size_mm}")
    if not (len(levels) == len(lambdas) == len(iterations) > 0) or any(int(s) < 1 for s in levels):
        raise ImageError(f"register_variational: levels {tuple(levels)} (each >= 1), lambdas {tuple(lambdas)} and "
                         f"iterations {tuple(iterations)} must be non-empty and of equal length")
    if any(not (float(x) > 0) for x in lambdas):
        raise ImageError(f"register_variational: lambdas must be positive; got {tuple(lambdas)}")
    return vs


def register_variational(
    moving: torch.Tensor,
    fixed: torch.Tensor,
    *,
    voxel_size_mm=(1.5, 1.5, 1.5),
    levels: tuple[int, ...] = (4, 2, 1),
    lambdas: tuple[float, ...] = (4.0, 2.0, 1.0),
    iterations: tuple[int, ...] = (40, 30, 25),
    weights=SHOOT_WEIGHTS,
    max_step: float = 1.0,
    steps: int = 5,
    velocity_levels: tuple[int, ...] | None = None,
    compute_inverse: bool = True,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> NonlinearResult:
    """Register tissue maps ``moving`` onto ``fixed`` by minimising ``E(v)`` (module docstring).

    Parameters
    ----------
    moving, fixed : torch.Tensor
        (C, X, Y, Z) subject (affinely aligned) and template probabilities on one grid.
    voxel_size_mm : sequence of 3 float
        Spacing of that grid in mm (Template_4_GS: 1.5).
    levels : tuple of int
        Downsampling factor per level, coarse to fine (1 = the input grid).
    lambdas : tuple of float
        Weight ``lambda`` of the regulariser at each level (decreasing: coarse levels stiffer,
        as the schedule of SPM's Shooting/DARTEL). Defaults (4, 2, 1) with iterations
        (40, 30, 25) tuned on ds002748 sub-01 (``benchmarks/registration_energy.py``; final
        lambda 0.5: warp MSE 0.0078 but linear elasticity 558; 1 with 10 fine steps: 0.0106, 322).
    iterations : tuple of int
        Largest number of descent steps per level (a level ends early once no step lowers E).
    weights : sequence of 5 float
        Regulariser weights, :func:`regulariser_energy` (SPM12 Shooting's ``rparam``).
    max_step : float
        Largest change of ``v`` per step, in voxels of the level's velocity grid.
    steps : int
        Squarings of the scaling and squaring (5: on ds002748 sub-01 the same figures as 7,
        warp MSE 0.00997 vs 0.00998 and linear elasticity 329 vs 330, in 15 % less time).
    velocity_levels : tuple of int, optional
        Downsampling factor of the velocity grid at each level, each >= the level's factor in
        ``levels`` (None: the same). A coarser velocity is exponentiated on its own grid and its
        displacement interpolated onto the image grid: ``(4, 2, 2)`` compares the images at
        1.5 mm with a velocity on the 3 mm grid, which the bending energy keeps smooth at that
        scale anyway, at about a third of the cost of the finest level.
    compute_inverse : bool
        Also integrate ``exp(-v)`` at full resolution.
    device : str or torch.device
        Where to compute (CPU or CUDA).
    progress : callable (done, total), optional
        Called after each step.

    Returns
    -------
    NonlinearResult
        ``velocity`` in voxels of the input grid, ``deformation = exp(v)``, ``inverse``,
        ``loss_history``: ``E`` after each accepted step (it only decreases within a level;
        levels differ in image blur and ``lambda``).

    Notes
    -----
    Step: ``W_m = m o exp(v/2)``, ``W_f = f o exp(-v/2)``, ``r = W_m - W_f``, first-order
    ``dr/dv = (grad W_m + grad W_f) / 2`` (as the demons of :mod:`nonlinear`), gradient
    ``G = 2 sum_c r_c dr_c/dv + lambda N dR/dv`` (``v`` in mm, ``N`` voxels), descent direction
    ``-(c I + lambda L)^-1 G`` by FFT (``L`` the regulariser's constant-coefficient operator,
    ``c`` the mean data Hessian ``2 |dr/dv|^2 / 3`` over image edges), step length halved until
    ``E`` decreases (at most 4 halvings; none: the level has converged).
    """
    vs = _check_inputs(moving, fixed, voxel_size_mm, levels, lambdas, iterations)
    vlevels = _velocity_levels(levels, velocity_levels)
    w = _check_weights(weights)
    dev = torch.device(device)
    mov = moving.to(dev, torch.float32)[None]
    fix = fixed.to(dev, torch.float32)[None]
    full = tuple(int(n) for n in moving.shape[1:])
    v: torch.Tensor | None = None
    history: list[float] = []
    total, done = int(sum(iterations)), 0
    for scale, vscale, lam_reg, n_iter in zip(levels, vlevels, lambdas, iterations, strict=True):
        shape = tuple(max(4, int(round(n / scale))) for n in full)
        vshape = tuple(max(4, int(round(n / vscale))) for n in full)
        h = [vs[j] * (full[j] - 1) / (vshape[j] - 1) for j in range(3)]  # velocity grid spacing, mm
        hv = torch.as_tensor(h, device=dev).view(1, 3, 1, 1, 1)
        hi = torch.as_tensor([vs[j] * (full[j] - 1) / (shape[j] - 1) for j in range(3)],
                             device=dev).view(1, 3, 1, 1, 1)  # image grid spacing, mm
        m_s, f_s = _downsample(mov, shape), _downsample(fix, shape)
        v = torch.zeros(1, 3, *vshape, device=dev) if v is None else resize_field(v, vshape)
        level = _Level(shape, vshape, dev)
        spec = _spectrum(vshape, h, w, float(lam_reg), dev)
        n_vox = float(torch.tensor(vshape).prod())

        def energy(vel: torch.Tensor, ctx=(level, m_s, f_s, hv, h, float(lam_reg))):
            return _energy(vel, *ctx, weights=w, steps=steps)

        e, w_m, w_f, reg_gradient = energy(v)
        alpha = 1.0
        for _ in range(int(n_iter)):
            r = w_m - w_f
            g = 0.5 * _gradient(w_m + w_f) / hi[:, None]  # (1, C, 3, X, Y, Z): dr/dv, v in mm
            grad = level.restrict(2.0 * (r[:, :, None] * g).sum(1))
            grad = grad + float(lam_reg) * n_vox * reg_gradient()
            hess = 2.0 * (g * g).sum((1, 2)) / 3.0
            edges = hess > 0.05 * hess.max()
            c = float(hess[edges].mean()) if bool(edges.any()) else 1.0
            du = torch.fft.irfftn(torch.fft.rfftn(-grad, dim=(2, 3, 4)) / (c + spec), s=vshape, dim=(2, 3, 4))
            du = du / hv  # voxels of the velocity grid
            biggest = float(du.abs().max())
            if biggest == 0.0:
                break
            alpha = min(1.0, 2.0 * alpha, max_step / biggest)
            for _halving in range(5):
                e_new, wm_new, wf_new, rg_new = energy(v + alpha * du)
                if e_new < e:
                    break
                alpha *= 0.5
            else:
                break  # no decrease along the descent direction: converged at this level
            v, e, w_m, w_f, reg_gradient = v + alpha * du, e_new, wm_new, wf_new, rg_new
            history.append(e)
            done += 1
            if progress is not None:
                progress(done, total)
    v = resize_field(v, full)
    phi = displacement_to_deformation(integrate_velocity(v, steps=steps))[0]
    inv = displacement_to_deformation(integrate_velocity(-v, steps=steps))[0] if compute_inverse else None
    return NonlinearResult(velocity=v[0], deformation=phi, inverse=inv, loss_history=history)
