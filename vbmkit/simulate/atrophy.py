"""Atrophy as tissue shrinkage: smooth displacement fields with a prescribed local volume loss.

Real GM loss thins the cortex and widens sulci and ventricles: tissue moves, CSF fills the
space. VBM sees it through the registration (the Jacobian of the warp that modulation applies)
and the moved tissue boundaries, not through dimmer voxels. The cohort simulator therefore
plants its effects as a displacement field: for a soft region weight ``w(x)`` the potential
``psi`` solves ``laplacian(psi) = w`` and ``v = grad(psi)`` has ``div v = w``, so sampling the
anatomy at ``x + c v(x)`` (a pull) shrinks the region's tissue by a volume factor of about
``1 / (1 + c w)``; outside the region ``v`` is a decaying gradient field (divergence-free), so
neighbouring tissue follows without changing volume. A perfect pipeline maps the subject back
with the inverse map ``x + u(x)``; its modulated maps are the template-space anatomy times
``det(I + Du)``.

Pure tensor code, voxel units throughout.
"""

from __future__ import annotations

import torch

from vbmkit.preprocess.jacobian import jacobian_determinant
from vbmkit.preprocess.warp import displacement_to_deformation, warp


def poisson_potential(source: torch.Tensor) -> torch.Tensor:
    """Solve ``laplacian(psi) = source`` (7-point stencil, voxel units) in free space.

    Parameters
    ----------
    source : torch.Tensor
        (X, Y, Z) float.

    Returns
    -------
    torch.Tensor
        (X, Y, Z) float32 potential.

    Notes
    -----
    FFT solution on a box padded to twice the size in every axis (periodic images of the
    source are a box away), with the source's mean over the padded box removed (the periodic
    problem needs a zero-mean source): a uniform ``-mean`` remains, below 1/8 of the source's
    mean, and its volume effect is counted wherever the field's Jacobian is used.
    """
    if source.ndim != 3:
        raise ValueError(f"source: expected (X, Y, Z); got shape {tuple(source.shape)}")
    shape = tuple(int(n) for n in source.shape)
    padded = [2 * n for n in shape]
    big = torch.zeros(padded, dtype=torch.float64)
    big[: shape[0], : shape[1], : shape[2]] = source.double()
    spectrum = torch.fft.rfftn(big)
    eig = torch.zeros(spectrum.shape, dtype=torch.float64)
    for axis, n in enumerate(padded):
        k = torch.fft.rfftfreq(n, dtype=torch.float64) if axis == 2 else torch.fft.fftfreq(n, dtype=torch.float64)
        view = [1, 1, 1]
        view[axis] = -1
        eig = eig + (2.0 * (torch.cos(2.0 * torch.pi * k) - 1.0)).reshape(view)
    eig[0, 0, 0] = 1.0
    spectrum = spectrum / eig
    spectrum[0, 0, 0] = 0.0  # drops the mean of the source
    psi = torch.fft.irfftn(spectrum, s=padded)
    return psi[: shape[0], : shape[1], : shape[2]].float()


def shrink_field(weight: torch.Tensor) -> torch.Tensor:
    """(3, X, Y, Z) pull displacement per unit loss for a region weight (X, Y, Z) in [0, 1].

    ``v = grad(psi)`` with ``laplacian(psi) = weight``: ``div v`` is about ``weight``, so pulling
    with ``c v`` shrinks tissue where ``weight`` is 1 by a volume factor of about ``1 / (1 + c)``.
    """
    psi = poisson_potential(weight)
    return torch.stack(torch.gradient(psi)).float()


def pull(maps: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """(C, X, Y, Z) maps sampled at ``x + displacement(x)`` (trilinear; zeros outside the box)."""
    return warp(maps[None].float(), displacement_to_deformation(displacement[None]))[0]


def invert_displacement(displacement: torch.Tensor, *, iterations: int = 12) -> torch.Tensor:
    """Displacement ``u`` of the inverse map: ``y + u(y) = x`` where ``y = x + v(x)``.

    Fixed point ``u(y) = -v(y + u(y))``; it converges when the largest derivative of ``v`` is
    below 1 (the atrophy fields here: about 0.5 at 30 % loss).
    """
    field = displacement[None]
    u = -field
    for _ in range(iterations):
        u = -warp(field, displacement_to_deformation(u), padding_mode="border")
    return u[0]


def displacement_jacobian(displacement: torch.Tensor) -> torch.Tensor:
    """(X, Y, Z) ``det(I + D displacement)``: the local volume ratio of ``x -> x + displacement(x)``."""
    return jacobian_determinant(displacement_to_deformation(displacement[None])[0])
