"""Shared phantoms of the registration tests: two tissue channels, a known smooth deformation,
and how well a found displacement agrees with the true one where it is identifiable."""

from __future__ import annotations

import torch

from vbmkit.preprocess.warp import displacement_to_deformation, integrate_velocity, warp

SHAPE = (28, 32, 26)


def phantom() -> torch.Tensor:
    """Two 'tissue' channels: a shell (GM-like) around a core (WM-like), with bumps."""
    x, y, z = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    r = torch.sqrt(x ** 2 + (y / 1.1) ** 2 + z ** 2) + 0.08 * torch.sin(6 * x) * torch.cos(5 * y)
    core = torch.sigmoid((0.45 - r) / 0.04)
    outer = torch.sigmoid((0.75 - r) / 0.04)
    return torch.stack([outer - core, core])


def moved(img: torch.Tensor, amplitude: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``img o exp(w)`` for a smooth random velocity ``w`` (voxels, max |w| = amplitude), and ``w``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.functional.interpolate(torch.randn(1, 3, 4, 4, 4, generator=g), size=SHAPE,
                                        mode="trilinear", align_corners=True)
    w = w / w.abs().max() * amplitude
    return warp(img[None], displacement_to_deformation(integrate_velocity(w)))[0], w


def edge_agreement(fixed: torch.Tensor, truth: torch.Tensor, found: torch.Tensor) -> tuple[float, float, float]:
    """(cosine, RMS error, RMS truth) of two (3, X, Y, Z) displacements at the 25 % strongest
    image gradients of ``fixed``: only there is a displacement identifiable (aperture problem)."""
    grad = sum(torch.stack(torch.gradient(fixed[c]), 0).pow(2).sum(0).sqrt() for c in range(fixed.shape[0]))
    edge = grad > torch.quantile(grad[grad > 0], 0.75)
    t, f = truth[:, edge], found[:, edge]
    cosine = float((t * f).sum() / (t.norm() * f.norm()))
    return cosine, float((f - t).pow(2).sum(0).mean().sqrt()), float(t.pow(2).sum(0).mean().sqrt())
