"""Image-quality rating of a T1 image from its segmentation, in the spirit of CAT12's.

Pure tensor code. Three measures of the input image, each relative to its own tissue contrast
so that the rating does not depend on the scanner's intensity scale, are turned into CAT12
marks (0.5 best .. 10.5 worst; 1 = A, 2 = B, ... 6 = F) and combined into one image-quality
rating, IQR:

- NCR, noise-to-contrast: the robust standard deviation of the high-pass residual in eroded
  white matter, over the smallest tissue contrast (GM-CSF or WM-GM);
- ICR, inhomogeneity-to-contrast: the robust spread of the white matter's low-frequency
  intensity (block means of about 8 mm) over the same contrast;
- RES, resolution: CAT12's ``res_RMS`` (root mean square voxel size, mm) and an edge-to-contrast
  ratio ``res_ECR`` (median intensity gradient across the GM/WM border per voxel, over the
  GM/WM contrast): blurring lowers it at an unchanged voxel size.

The formulas and the anchors of the marks are in ``docs/algorithms_segmentation.md`` ("Image
quality rating").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError

#: (value of mark 1, value of mark 6) of each measure; CAT12's anchors for NCR, ICR and res_RMS
#: (cat_stat_marks), res_ECR calibrated on ds002748 (docs/algorithms_segmentation.md).
ANCHORS = {"NCR": (0.0466, 0.3949), "ICR": (0.2178, 1.1169), "res_RMS": (0.5, 3.0), "res_ECR": (0.40, 0.10)}
#: Exponent of the power mean that combines the marks: the worst measure dominates.
POWER = 4.0
#: Width of the white-matter block means of ICR, mm.
BLOCK_MM = 8.0


@dataclass(frozen=True)
class QualityRating:
    """Measures, marks and the combined rating of one image.

    Attributes
    ----------
    measures : dict
        ``NCR``, ``ICR`` (ratios), ``res_RMS`` (mm), ``res_ECR`` (ratio), ``contrast`` (the
        smallest tissue contrast, image units), ``tissue_means`` (CSF, GM, WM medians).
    marks : dict
        CAT12 marks of ``NCR``, ``ICR``, ``res_RMS``, ``res_ECR``, ``RES`` (the worse of the two
        resolution marks) and ``IQR`` (the combined rating): 0.5 best .. 10.5 worst.
    """

    measures: dict[str, float | list[float]]
    marks: dict[str, float]

    @property
    def percent(self) -> float:
        """IQR as CAT12's percent rating: ``105 - 10 * mark``."""
        return 105.0 - 10.0 * self.marks["IQR"]

    @property
    def grade(self) -> str:
        """IQR as a letter: ``A+`` .. ``F`` (mark 1 = A, 2 = B, ...; +/- for thirds)."""
        return mark_to_grade(self.marks["IQR"])


def mark_to_grade(mark: float) -> str:
    """CAT12 mark -> letter grade: 1 A, 2 B, 3 C, 4 D, 5 E, >= 5.5 F; ``+``/``-`` for the outer thirds."""
    m = min(max(float(mark), 0.5), 10.5)
    base = min(int(math.floor(m + 0.5)), 6)
    letter = "ABCDEF"[max(base, 1) - 1]
    if base >= 6:
        return "F"
    offset = m - base
    return letter + ("+" if offset < -1 / 6 else "-" if offset > 1 / 6 else "")


def to_mark(value: float, best: float, worst: float) -> float:
    """Linear mark: ``best`` -> 1, ``worst`` -> 6, clipped to CAT12's 0.5 .. 10.5."""
    return float(min(max(1.0 + 5.0 * (value - best) / (worst - best), 0.5), 10.5))


def _robust_std(x: torch.Tensor) -> float:
    """1.4826 x median absolute deviation (the standard deviation of normal data)."""
    return float(1.4826 * (x - x.median()).abs().median())


def _erode(mask: torch.Tensor, times: int) -> torch.Tensor:
    m = mask[None, None].float()
    for _ in range(times):
        m = -F.max_pool3d(-m, 3, stride=1, padding=1)
    return m[0, 0] > 0.5


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    return F.max_pool3d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0.5


def rate_quality(image: torch.Tensor, p0: torch.Tensor, voxel_size_mm) -> QualityRating:
    """Rate a T1 image from its CAT12 label map.

    Parameters
    ----------
    image : torch.Tensor
        (X, Y, Z) T1 intensities (any scale; bright WM), on the grid of ``p0``.
    p0 : torch.Tensor
        (X, Y, Z) CAT12 label map 0..3 (1 CSF, 2 GM, 3 WM; mixtures in between).
    voxel_size_mm : sequence of 3 floats
        Voxel size of the grid in mm.

    Returns
    -------
    QualityRating

    Raises
    ------
    ImageError
        For mismatched shapes, or fewer than 100 voxels of a pure tissue (no segmentation to
        rate against), or a tissue order that is not T1's (WM > GM > CSF).

    Notes
    -----
    Pure tissue: ``|p0 - k| < 0.25`` (k = 1, 2, 3); tissue means ``mu_k`` are medians there;
    ``C = min(mu_GM - mu_CSF, mu_WM - mu_GM)``.
    ``NCR = s(y - box3(y) | WM eroded twice) sqrt(27/26) / C`` with ``s`` the robust standard
    deviation (the residual of a 27-voxel mean has variance 26/27 of the noise's).
    ``ICR = (q90 - q10) / 2.563 / C`` of the means of ~8 mm blocks that are >= 80 % eroded WM
    (4 or 2 mm blocks when fewer than 10 such blocks exist; NaN, mark 10.5, when still fewer).
    ``res_RMS = sqrt(mean(vx^2))``; ``res_ECR = median |grad y| * mean(vx) / (mu_WM - mu_GM)``
    over GM/WM border voxels (within one voxel, 26-neighbourhood, of both ``p0 > 2.5`` and
    ``1.5 < p0 <= 2.5``), gradients by central differences in mm.
    Marks are linear between :data:`ANCHORS`; ``RES = max(mark res_RMS, mark res_ECR)``;
    ``IQR = (mean(mark^4 over NCR, ICR, RES))^(1/4)``.
    """
    if image.shape != p0.shape or image.ndim != 3:
        raise ImageError(f"rate_quality: expected image and p0 of one (X, Y, Z) shape; got "
                         f"{tuple(image.shape)} and {tuple(p0.shape)}")
    y = image.detach().float()
    p = p0.detach().float().to(y.device)
    vx = torch.as_tensor([float(v) for v in voxel_size_mm], dtype=torch.float64)
    nz = (p > 0.5).nonzero()
    if nz.numel():  # crop to the labelled box (+2 voxels): every measure lives inside it
        lo = (nz.min(dim=0).values - 2).clamp(min=0).tolist()
        hi = (nz.max(dim=0).values + 3).tolist()
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        y, p = y[box], p[box]
    pure = [(p - k).abs() < 0.25 for k in (1, 2, 3)]
    counts = [int(m.sum()) for m in pure]
    if min(counts) < 100:
        raise ImageError(f"rate_quality: expected >= 100 voxels of each pure tissue (CSF, GM, WM) in p0; "
                         f"got {counts}")
    mu = [float(y[m].median()) for m in pure]
    if not mu[0] < mu[1] < mu[2]:
        raise ImageError(f"rate_quality: expected T1 contrast (CSF < GM < WM medians); got {mu}")
    contrast = min(mu[1] - mu[0], mu[2] - mu[1])
    wm_core = _erode(pure[2], 2)
    if int(wm_core.sum()) < 100:
        wm_core = _erode(pure[2], 1)
    local = F.avg_pool3d(y[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    noise = _robust_std((y - local)[wm_core]) * math.sqrt(27.0 / 26.0)
    ncr = noise / contrast
    wm1 = _erode(pure[2], 1).float()
    for block in (BLOCK_MM, BLOCK_MM / 2, BLOCK_MM / 4):  # smaller blocks for a small brain / phantom
        k = [max(1, int(round(block / float(v)))) for v in vx]
        num = F.avg_pool3d((y * wm1)[None, None], k, stride=k, ceil_mode=True)[0, 0]
        den = F.avg_pool3d(wm1[None, None], k, stride=k, ceil_mode=True)[0, 0]
        blocks = num[den >= 0.8] / den[den >= 0.8]
        if blocks.numel() >= 10:
            break
    if blocks.numel() >= 10:
        q = torch.quantile(blocks.double(), torch.tensor([0.1, 0.9], dtype=torch.float64))
        icr = float(q[1] - q[0]) / 2.563 / contrast
    else:
        icr = float("nan")
    grads = torch.gradient(y, spacing=[float(v) for v in vx])
    gmag = torch.sqrt(sum(g * g for g in grads))
    border = _dilate(p > 2.5) & _dilate((p > 1.5) & (p <= 2.5))  # within a voxel of both GM and WM
    ecr = float(gmag[border].median()) * float(vx.mean()) / (mu[2] - mu[1]) if int(border.sum()) else float("nan")
    res_rms = float(torch.sqrt((vx ** 2).mean()))
    measures = {"NCR": ncr, "ICR": icr, "res_RMS": res_rms, "res_ECR": ecr, "contrast": contrast,
                "tissue_means": mu}
    marks = {key: to_mark(measures[key], *ANCHORS[key]) if math.isfinite(measures[key]) else 10.5
             for key in ANCHORS}
    marks["RES"] = max(marks["res_RMS"], marks["res_ECR"])
    parts = torch.tensor([marks["NCR"], marks["ICR"], marks["RES"]], dtype=torch.float64)
    marks["IQR"] = float(parts.pow(POWER).mean().pow(1.0 / POWER))
    return QualityRating(measures=measures, marks=marks)
