"""Smooth multiplicative bias field of the tissue segmentation, estimated from the residual
between log intensities and the log means of the tissue each voxel is assigned to."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vbmkit.preprocess.smooth import smooth_fwhm


def normalized_smooth(values: torch.Tensor, weights: torch.Tensor, fwhm_mm: float,
                      voxel_size_mm: tuple[float, float, float], *, factor: int = 4) -> torch.Tensor:
    """Weighted Gaussian smoothing ``G * (w v) / G * w`` computed on a grid ``factor`` times coarser.

    Parameters
    ----------
    values, weights : torch.Tensor
        (X, Y, Z); weights >= 0 (0 outside the brain).
    fwhm_mm : float
        Kernel FWHM in mm.

    Returns
    -------
    torch.Tensor
        (X, Y, Z) smooth field, defined everywhere the kernel reaches some weight (0 elsewhere).

    Notes
    -----
    Smoothing at 1/``factor`` resolution (box-averaged) is exact enough for kernels much wider
    than the coarse voxel and ~``factor^3`` times cheaper.
    """
    shape = values.shape
    stack = torch.stack([weights * values, weights])[None]
    coarse = F.avg_pool3d(stack, factor, stride=factor, ceil_mode=True)
    vox = tuple(float(v) * factor for v in voxel_size_mm)
    coarse = smooth_fwhm(coarse, fwhm_mm, vox)
    fine = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=False)[0]
    return fine[0] / fine[1].clamp_min(1e-6 * float(fine[1].max().clamp_min(1e-12)))


def bias_residual(log_y: torch.Tensor, log_bias: torch.Tensor, post: torch.Tensor, mu: torch.Tensor,
                  var: torch.Tensor, pure: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel log residual and its precision weight from the pure-class posteriors.

    Parameters
    ----------
    log_y, log_bias : torch.Tensor
        (N,) log intensity and current log bias of the brain voxels.
    post : torch.Tensor
        (K, N) posteriors; rows ``pure`` are the pure classes matching ``mu``/``var`` (3,).

    Returns
    -------
    residual, weight : torch.Tensor
        (N,) ``sum_k q_k l_k (log y - log b - log mu_k) / sum_k q_k l_k`` and ``sum_k q_k l_k``
        with ``l_k = mu_k^2 / var_k`` the precision of class ``k`` in the log domain.

    Notes
    -----
    Partial-volume voxels carry no information on the bias (any intensity between two means
    fits them), so only pure posteriors count.
    """
    lam = mu ** 2 / var
    q = post[list(pure)] * lam[:, None]
    w = q.sum(0)
    r = log_y - log_bias
    resid = (q * (r[None] - torch.log(mu)[:, None])).sum(0) / w.clamp_min(1e-12)
    return resid, w
