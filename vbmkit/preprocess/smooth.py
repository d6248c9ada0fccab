"""Gaussian smoothing with the kernel width given as FWHM in mm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def gaussian_kernel1d(sigma_vox: float, *, truncate: float = 4.0,
                      dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma_vox`` voxels, radius ``truncate`` sigma."""
    if sigma_vox <= 0:
        return torch.ones(1, dtype=dtype, device=device)
    radius = max(1, int(math.ceil(truncate * sigma_vox)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / sigma_vox) ** 2)
    return (k / k.sum()).to(dtype)


def smooth_fwhm(data: torch.Tensor, fwhm_mm: float | tuple[float, float, float],
                voxel_size_mm: tuple[float, float, float], *, truncate: float = 4.0) -> torch.Tensor:
    """Smooth (B, C, X, Y, Z) data with a separable Gaussian of the given FWHM.

    Parameters
    ----------
    data : torch.Tensor
        (B, C, X, Y, Z) float values (or (X, Y, Z)).
    fwhm_mm : float or 3 floats
        Full width at half maximum in mm per axis (6 for CAT12's s6 maps); 0 returns a copy.
    voxel_size_mm : 3 floats
        Voxel edge lengths in mm.

    Returns
    -------
    torch.Tensor
        Same shape and dtype. Outside the field of view counts as zero (as in SPM's
        ``spm_smooth``), so values fade at the border of the grid.

    Notes
    -----
    sigma = FWHM / (2 sqrt(2 ln 2)) ~= FWHM / 2.3548; the kernel is normalised to sum 1, so the
    integral of the image (e.g. total GM volume of a modulated map) is kept away from borders.
    """
    squeeze = data.ndim == 3
    x = data[None, None] if squeeze else data
    fwhm = (float(fwhm_mm),) * 3 if isinstance(fwhm_mm, (int, float)) else tuple(map(float, fwhm_mm))
    b, c = x.shape[:2]
    out = x.reshape(b * c, 1, *x.shape[2:])
    for axis in range(3):
        sigma = fwhm[axis] * FWHM_TO_SIGMA / float(voxel_size_mm[axis])
        k = gaussian_kernel1d(sigma, truncate=truncate, dtype=out.dtype, device=out.device)
        if k.numel() == 1:
            continue
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0, 0, 0]
        pad[axis] = k.numel() // 2
        out = F.conv3d(out, k.reshape(shape), padding=tuple(pad))
    out = out.reshape(x.shape)
    return out[0, 0] if squeeze else out
