"""A toy cohort of smooth GM-like maps with a planted age effect (for ``vbmkit demo``).

Pure tensor code: the maps come back as tensors and the caller writes them. The cohort is
small enough to fit and test in seconds on a laptop CPU; the full synthetic pipeline cohort
lives in :mod:`vbmkit.simulate.cohort`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vbmkit.preprocess.smooth import smooth_fwhm


@dataclass(frozen=True, eq=False)
class ToyCohort:
    """Maps and covariates of a toy cohort.

    Attributes
    ----------
    maps : torch.Tensor
        (N, X, Y, Z) float32 GM-like values in [0, 1].
    age : torch.Tensor
        (N,) float64 years.
    sex : list of str
        N labels ``"F"`` / ``"M"``.
    tiv : torch.Tensor
        (N,) float64 total intracranial volume in mL (unrelated to the maps here).
    truth : torch.Tensor
        (X, Y, Z) float32 planted GM change per year of age (<= 0; zero outside the blob).
    brain : torch.Tensor
        (X, Y, Z) bool, the ellipsoid where the baseline map is non-zero.
    peak_ijk : tuple of int
        Voxel of the strongest planted effect.
    """

    maps: torch.Tensor
    age: torch.Tensor
    sex: list[str]
    tiv: torch.Tensor
    truth: torch.Tensor
    brain: torch.Tensor
    peak_ijk: tuple[int, int, int]


def make_toy_cohort(n: int = 60, *, shape: tuple[int, int, int] = (40, 48, 40), voxel_mm: float = 3.0,
                    effect_per_year: float = 0.004, noise_sd: float = 0.04, fwhm_mm: float = 8.0,
                    seed: int = 0) -> ToyCohort:
    """Draw ``n`` smooth maps whose values fall with age inside one Gaussian blob.

    Parameters
    ----------
    n : int
        Subjects.
    shape : 3 ints
        Grid size (X, Y, Z) in voxels.
    voxel_mm : float
        Isotropic voxel size in mm (sets the smoothness in voxels).
    effect_per_year : float
        GM lost per year of age at the centre of the blob (map units / year).
    noise_sd : float
        SD of the smoothed subject noise (map units, after smoothing).
    fwhm_mm : float
        FWHM of the noise smoothing in mm.
    seed : int
        Seed of the explicit generator (same seed, same cohort).

    Notes
    -----
    map_n(v) = clip(b(v) + truth(v) (age_n - 50) + e_n(v), 0, 1), with b an ellipsoid of 0.5
    (0.7 in an inner shell pattern), truth(v) = -effect_per_year exp(-|v - c|^2 / (2 s^2)),
    s = 2.5 voxels, and e_n smoothed white noise rescaled to SD ``noise_sd`` inside the brain.
    """
    g = torch.Generator().manual_seed(int(seed))
    axes = [torch.arange(s, dtype=torch.float32) for s in shape]
    ii, jj, kk = torch.meshgrid(*axes, indexing="ij")
    centre = [(s - 1) / 2 for s in shape]
    radius = [0.42 * s for s in shape]
    r2 = sum(((a - c) / r) ** 2 for a, c, r in zip((ii, jj, kk), centre, radius, strict=True))
    brain = r2 <= 1.0
    baseline = torch.where(brain, 0.5 + 0.2 * torch.cos(6.0 * torch.sqrt(r2)), torch.zeros(()))
    peak = (int(round(shape[0] * 0.3)), int(round(shape[1] * 0.6)), int(round(shape[2] * 0.55)))
    d2 = (ii - peak[0]) ** 2 + (jj - peak[1]) ** 2 + (kk - peak[2]) ** 2
    truth = torch.where(brain, -effect_per_year * torch.exp(-d2 / (2 * 2.5**2)), torch.zeros(()))
    age = 20.0 + 60.0 * torch.rand(n, generator=g, dtype=torch.float64)
    male = torch.rand(n, generator=g) < 0.5
    tiv = torch.where(male, 1550.0, 1400.0).double() + 80.0 * torch.randn(n, generator=g, dtype=torch.float64)
    noise = torch.randn((n, 1, *shape), generator=g)
    noise = smooth_fwhm(noise, fwhm_mm, (voxel_mm,) * 3)[:, 0]
    noise = noise / noise[:, brain].std() * noise_sd
    maps = baseline + truth * (age.float() - 50.0).view(n, 1, 1, 1) + noise
    maps = torch.where(brain, maps.clamp(0.0, 1.0), torch.zeros(()))
    return ToyCohort(maps=maps.float(), age=age, sex=["M" if m else "F" for m in male.tolist()], tiv=tiv,
                     truth=truth.float(), brain=brain, peak_ijk=peak)
