"""T1 intensity checks and robust normalisation (pure tensor code).

Scanners store T1 images on arbitrary scales (uint8 0-255, int16 0-4095, float 0-1, with a few
very bright vessels or fat voxels). The steps after brain extraction want brain tissue on a
common scale, so the image is divided by a robust upper percentile of the brain and clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vbmkit.errors import ImageError

MIN_SIZE = 16  # voxels along each axis: fewer is a slice stack or a thumbnail, not a 3-D T1
VOXEL_RANGE_MM = (0.1, 8.0)  # outside this a header is broken (or the image is not a T1)


def masked_quantile(x: torch.Tensor, q: float, mask: torch.Tensor | None = None) -> float:
    """The ``q`` quantile (0..1) of ``x`` inside ``mask`` (all voxels when None).

    Uses :func:`torch.kthvalue` (lower order statistic), which, unlike ``torch.quantile``,
    has no limit on the number of elements.
    """
    values = x[mask] if mask is not None else x.flatten()
    n = values.numel()
    if n == 0:
        raise ImageError("masked_quantile: expected at least one voxel in the mask; got none")
    k = min(n, max(1, int(round(q * (n - 1))) + 1))
    return float(torch.kthvalue(values.float().cpu(), k).values)


def validate_t1(data: torch.Tensor, voxel_size_mm: Sequence[float], *, source: str = "image") -> None:
    """Raise :class:`ImageError` naming ``source`` when ``data`` cannot be a 3-D T1 image.

    Parameters
    ----------
    data : torch.Tensor
        (X, Y, Z) intensities.
    voxel_size_mm : 3 floats
        Voxel edge lengths in mm.
    source : str
        Name used in messages (the file path).

    Checks: three axes of at least 16 voxels, voxel sizes within 0.1-8 mm, finite values, an
    image that is neither empty (all zero) nor constant.
    """
    shape = tuple(data.shape)
    if data.ndim != 3 or min(shape) < MIN_SIZE:
        raise ImageError(f"{source}: expected a 3-D image with at least {MIN_SIZE} voxels along each "
                         f"axis; got shape {shape} (a 2-D slice or a thumbnail?)")
    sizes = [float(s) for s in voxel_size_mm]
    lo, hi = VOXEL_RANGE_MM
    if len(sizes) != 3 or any(not (lo <= s <= hi) for s in sizes):
        raise ImageError(f"{source}: expected voxel sizes between {lo} and {hi} mm; got "
                         f"{tuple(round(s, 4) for s in sizes)} (check the header's pixdim/affine)")
    finite = torch.isfinite(data)
    if not bool(finite.all()):
        raise ImageError(f"{source}: expected finite voxel values; found {int((~finite).sum())} NaN/Inf voxels")
    vmin, vmax = float(data.min()), float(data.max())
    if vmax == 0.0 and vmin == 0.0:
        raise ImageError(f"{source}: expected a T1 image; every voxel is 0 (empty image)")
    if vmax - vmin <= 1e-6 * max(abs(vmax), abs(vmin)):
        raise ImageError(f"{source}: expected a T1 image with contrast; every voxel is {vmax:g} (constant image)")
    if vmax <= 0.0:
        raise ImageError(f"{source}: expected positive T1 intensities; the largest value is {vmax:g}")


def normalize_intensity(image: torch.Tensor, mask: torch.Tensor | None = None, *,
                        quantile: float = 0.95, clip_max: float | None = 1.0) -> tuple[torch.Tensor, float]:
    """Scale ``image`` so that its ``quantile`` inside ``mask`` becomes 1, then clip.

    Parameters
    ----------
    image : torch.Tensor
        (X, Y, Z) float intensities.
    mask : torch.Tensor, optional
        (X, Y, Z) bool brain mask; the whole positive part of the image when None.
    quantile : float
        Robust upper percentile (0.95 as in deepmriprep's affine step: brighter voxels are WM,
        vessels and fat, which should not set the scale).
    clip_max : float or None
        Upper clip after scaling (None: no clip). Negative values are always clipped to 0.

    Returns
    -------
    scaled : torch.Tensor
        (X, Y, Z) float32.
    scale : float
        The divisor that was used (intensity units of the input).
    """
    region = mask if mask is not None else image > 0
    if not bool(region.any()):
        raise ImageError("normalize_intensity: expected a non-empty mask; got an empty one")
    scale = masked_quantile(image, quantile, region)
    if scale <= 0:
        raise ImageError(f"normalize_intensity: expected a positive {quantile:.0%} quantile of the brain; "
                         f"got {scale:g}")
    out = (image.float() / scale).clamp_min(0.0)
    if clip_max is not None:
        out = out.clamp_max(float(clip_max))
    return out, scale
