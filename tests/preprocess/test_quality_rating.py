"""Image-quality rating on label phantoms with known noise, bias and blur."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vbmkit.errors import ImageError
from vbmkit.preprocess.quality import ANCHORS, mark_to_grade, rate_quality, to_mark

SHAPE = (40, 44, 36)  # unequal dimensions
VOX = (1.0, 1.2, 0.9)  # anisotropic voxels, mm
MEANS = {1: 300.0, 2: 900.0, 3: 1500.0}  # CSF, GM, WM: smallest contrast 600


def _phantom() -> torch.Tensor:
    """p0: CSF shell, GM layer, WM core (nested boxes), background 0."""
    p0 = torch.zeros(SHAPE)
    p0[2:-2, 2:-2, 2:-2] = 1
    p0[6:-6, 6:-6, 6:-6] = 2
    p0[12:-12, 12:-12, 10:-10] = 3
    return p0


def _image(p0: torch.Tensor, *, noise: float = 0.0, bias: float = 0.0, seed: int = 0) -> torch.Tensor:
    img = torch.zeros(SHAPE)
    for k, mu in MEANS.items():
        img[p0 == k] = mu
    if bias:
        ramp = torch.linspace(-1, 1, SHAPE[0])[:, None, None].expand(SHAPE)
        img = img * torch.exp(bias * ramp)
    gen = torch.Generator().manual_seed(seed)
    return img + noise * torch.randn(SHAPE, generator=gen)


def _blur(img: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    r = int(3 * sigma_vox) + 1
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma_vox) ** 2)
    k = k / k.sum()
    out = img[None, None]
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = k.numel()
        pad = [0] * 6
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = r
        out = F.conv3d(F.pad(out, pad, mode="replicate"), k.view(shape))
    return out[0, 0]


def test_ncr_measures_the_noise_over_the_smallest_contrast():
    p0 = _phantom()
    r = rate_quality(_image(p0, noise=60.0), p0, VOX)
    # sigma 60 over contrast 600: 0.1; the robust estimate on ~4,000 WM voxels is within 10 %
    assert r.measures["NCR"] == pytest.approx(0.1, rel=0.1)
    assert r.measures["contrast"] == pytest.approx(600.0, rel=0.05)
    assert r.measures["res_RMS"] == pytest.approx(math.sqrt((1 + 1.44 + 0.81) / 3))
    assert r.marks["NCR"] == pytest.approx(to_mark(r.measures["NCR"], *ANCHORS["NCR"]))


def test_every_artifact_raises_the_mark():
    p0 = _phantom()
    clean = rate_quality(_image(p0, noise=15.0), p0, VOX)
    noisy = rate_quality(_image(p0, noise=90.0), p0, VOX)
    biased = rate_quality(_image(p0, noise=15.0, bias=0.4), p0, VOX)
    blurred = rate_quality(_blur(_image(p0, noise=15.0), 2.0), p0, VOX)
    assert noisy.marks["NCR"] > clean.marks["NCR"] + 1
    assert biased.measures["ICR"] > clean.measures["ICR"] + 0.05
    assert blurred.measures["res_ECR"] < 0.7 * clean.measures["res_ECR"]
    for worse in (noisy, biased, blurred):
        assert worse.marks["IQR"] > clean.marks["IQR"]
        assert worse.percent < clean.percent
    # the power mean lies between the mean and the worst of the three marks
    parts = [clean.marks[k] for k in ("NCR", "ICR", "RES")]
    assert sum(parts) / 3 <= clean.marks["IQR"] <= max(parts)


def test_marks_and_grades():
    assert to_mark(0.0466, *ANCHORS["NCR"]) == pytest.approx(1.0)
    assert to_mark(0.3949, *ANCHORS["NCR"]) == pytest.approx(6.0)
    assert to_mark(100.0, *ANCHORS["NCR"]) == 10.5 and to_mark(-1.0, *ANCHORS["NCR"]) == 0.5
    assert to_mark(0.40, *ANCHORS["res_ECR"]) == pytest.approx(1.0)  # higher ECR is better
    assert [mark_to_grade(m) for m in (0.6, 1.0, 1.3, 2.0, 2.75, 5.0, 5.6, 9.0)] == \
        ["A+", "A", "A-", "B", "C+", "E", "F", "F"]


def test_rating_errors():
    p0 = _phantom()
    img = _image(p0, noise=10.0)
    with pytest.raises(ImageError, match=r"expected image and p0 of one \(X, Y, Z\) shape"):
        rate_quality(img[:-1], p0, VOX)
    no_csf = p0.clone()
    no_csf[no_csf == 1] = 0
    with pytest.raises(ImageError, match=r">= 100 voxels of each pure tissue .* got \[0, "):
        rate_quality(img, no_csf, VOX)
    with pytest.raises(ImageError, match=r"expected T1 contrast \(CSF < GM < WM medians\)"):
        rate_quality(-img, p0, VOX)
