"""The periventricular band: where CSF meets WM at the lateral ventricles.

Two uses (``docs/algorithms_segmentation.md``, section "Ventricle walls"):

- the *region* of the CSF/WM partial-volume class of the segmentation: the lateral ventricles of
  the template and a margin around them, pulled onto the subject with the tissue priors;
- the *band* of the periventricular GM figure: template voxels within 3 mm of the ventricles
  (outside them), over which the modulated GM map sums to subject mL (a QC figure tracked like TIV).

Pure tensor code on any device; the ventricle mask comes from :mod:`vbmkit.io.ventricles`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Width of the band of the periventricular GM figure, mm (issue 18).
BAND_MM = 3.0
#: Margin of the CSF/WM class region around the template's ventricles, mm: the band plus the
#: misregistration left by the coarse registration that deforms the priors (about 2 voxels).
REGION_MM = 6.0


def _ball(radius_vox: tuple[float, float, float], *, device, dtype) -> torch.Tensor:
    """(1, 1, a, b, c) ellipsoid of the given radii in voxels (a ball in mm)."""
    half = [int(math.floor(r)) for r in radius_vox]
    axes = [torch.arange(-h, h + 1, device=device, dtype=dtype) / max(r, 1e-6) for h, r in zip(half, radius_vox, strict=True)]
    zz = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return ((zz ** 2).sum(0) <= 1.0 + 1e-6).to(dtype)[None, None]


def dilate_mm(mask: torch.Tensor, radius_mm: float, voxel_size_mm: tuple[float, float, float]) -> torch.Tensor:
    """Voxels within ``radius_mm`` of ``mask`` (bool (X, Y, Z)), the mask included (ball in mm).

    Parameters
    ----------
    mask : torch.Tensor
        (X, Y, Z) bool.
    radius_mm : float
        Dilation radius in mm (>= 0).
    voxel_size_mm : 3 floats
        Voxel size of the grid, mm.

    Returns
    -------
    torch.Tensor
        (X, Y, Z) bool.
    """
    if mask.ndim != 3:
        raise ValueError(f"mask: expected (X, Y, Z); got shape {tuple(mask.shape)}")
    if radius_mm < 0:
        raise ValueError(f"radius_mm: expected >= 0; got {radius_mm}")
    kernel = _ball(tuple(radius_mm / float(v) for v in voxel_size_mm), device=mask.device, dtype=torch.float32)
    pad = tuple(p for s in reversed(kernel.shape[2:]) for p in (s // 2, s // 2))
    hit = F.conv3d(F.pad(mask.float()[None, None], pad), kernel)[0, 0]
    return hit > 0.5


def periventricular_band(ventricles: torch.Tensor, voxel_size_mm: tuple[float, float, float], *,
                         width_mm: float = BAND_MM) -> torch.Tensor:
    """(X, Y, Z) bool: voxels within ``width_mm`` of the ventricle mask, outside it."""
    return dilate_mm(ventricles.bool(), width_mm, voxel_size_mm) & ~ventricles.bool()


def csf_wm_region(ventricles: torch.Tensor, voxel_size_mm: tuple[float, float, float], *,
                  margin_mm: float = REGION_MM) -> torch.Tensor:
    """(X, Y, Z) float32 in [0, 1]: where the segmentation's CSF/WM class may occur.

    The ventricles and ``margin_mm`` around them (1), with a linear fall-off over one more
    ``margin_mm / 2`` (a smooth edge survives the interpolation of the prior warp).
    """
    inner = dilate_mm(ventricles.bool(), margin_mm, voxel_size_mm)
    outer = dilate_mm(ventricles.bool(), 1.5 * margin_mm, voxel_size_mm)
    edge = (outer & ~inner).float()
    soft = F.avg_pool3d(inner.float()[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    return torch.where(inner, torch.ones_like(soft), soft * edge)


def band_volume_ml(tissue: torch.Tensor, band: torch.Tensor, voxel_volume_ml: float) -> float:
    """Sum of a (modulated) tissue map over ``band``, in mL.

    Parameters
    ----------
    tissue : torch.Tensor
        (X, Y, Z) tissue fraction (a modulated map: fraction x Jacobian, so the sum is native mL).
    band : torch.Tensor
        (X, Y, Z) bool, same grid.
    voxel_volume_ml : float
        Volume of one voxel of that grid, mL.
    """
    if tuple(tissue.shape) != tuple(band.shape):
        raise ValueError(f"tissue {tuple(tissue.shape)} and band {tuple(band.shape)}: expected one grid")
    return float((tissue.float() * band.to(tissue.device).float()).sum()) * float(voxel_volume_ml)
