"""The CSF/WM partial-volume class: a ventricle wall between CSF and WM is not read as GM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from vbmkit.errors import ImageError
from vbmkit.preprocess.gmm import CSF_WM, class_loglik
from vbmkit.preprocess.mrf import compatibility
from vbmkit.preprocess.periventricular import (
    band_volume_ml,
    csf_wm_region,
    dilate_mm,
    periventricular_band,
)
from vbmkit.preprocess.segment import segment

SHAPE = (28, 28, 28)
MEANS = {"csf": 0.25, "gm": 0.6, "wm": 0.9}  # T1-like, as simulate.phantom


def _wall_phantom(seed: int = 0):
    """WM with a cortex slab (CSF, then GM) on one side and a CSF ventricle ball in its middle.

    The truth is blurred (sigma 1 voxel), so the ventricle wall holds CSF/WM mixtures whose
    intensity passes through GM's; there is no GM within 5 voxels of the ventricle.
    Returns image, mask, fractions (GM, WM, CSF), ventricle mask.
    """
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")
    csf = (x < 4).astype(float)
    gm = ((x >= 4) & (x < 8)).astype(float)
    ventricle = (x - 18) ** 2 + (y - 14) ** 2 + (z - 14) ** 2 <= 4.5 ** 2
    csf[ventricle] = 1.0
    wm = 1.0 - csf - gm
    frac = np.stack([ndimage.gaussian_filter(f, 1.0) for f in (gm, wm, csf)])
    frac /= frac.sum(0, keepdims=True)
    rng = np.random.default_rng(seed)
    image = frac[0] * MEANS["gm"] + frac[1] * MEANS["wm"] + frac[2] * MEANS["csf"] + rng.normal(0, 0.015, SHAPE)
    mask = np.ones(SHAPE, bool)
    as_t = [torch.from_numpy(a.astype(np.float32)) for a in (image, frac)]
    return as_t[0], torch.from_numpy(mask), as_t[1], torch.from_numpy(ventricle)


def _priors(frac: torch.Tensor) -> torch.Tensor:
    """Blurred truth as spatial priors (GM, WM, CSF), as a registered template would be."""
    return torch.from_numpy(np.stack([ndimage.gaussian_filter(f.numpy(), 1.5) for f in frac]).astype(np.float32))


def test_six_class_likelihood_and_compatibility():
    y = torch.linspace(0.1, 1.0, 50)
    mu, var = torch.tensor([0.25, 0.6, 0.9]), torch.tensor([0.002, 0.002, 0.002])
    five, six = class_loglik(y, mu, var), class_loglik(y, mu, var, n_classes=6)
    torch.testing.assert_close(six[:5], five)
    # CSF/WM density: the mean over fractions t of N(t mu_CSF + (1 - t) mu_WM, ...), by brute force
    t = (torch.arange(7) + 0.5) / 7
    m, v = t * mu[0] + (1 - t) * mu[2], t * var[0] + (1 - t) * var[2]
    dens = (torch.exp(-0.5 * (y[:, None] - m) ** 2 / v) / torch.sqrt(2 * torch.pi * v)).mean(1)
    torch.testing.assert_close(six[CSF_WM], torch.log(dens), atol=1e-4, rtol=1e-4)
    comp = compatibility(6)
    assert comp[CSF_WM].tolist() == [0.5, 0.0, 0.0, 0.0, 0.5, 1.0]
    torch.testing.assert_close(comp, comp.T)
    torch.testing.assert_close(comp[:5, :5], compatibility(5))


def test_ventricle_wall_gm_removed_and_cortex_kept():
    image, mask, frac, ventricle = _wall_phantom()
    priors = _priors(frac)
    region = csf_wm_region(ventricle, (1.0, 1.0, 1.0), margin_mm=4.0)
    before = segment(image, mask, priors=priors, prior_weight=1.0, n_iter=12)
    after = segment(image, mask, priors=priors, prior_weight=1.0, n_iter=12, csf_wm_region=region)
    band = periventricular_band(ventricle, (1.0, 1.0, 1.0), width_mm=3.0)
    gm_before = band_volume_ml(before.probs[0], band, 0.001)
    gm_after = band_volume_ml(after.probs[0], band, 0.001)
    truth = band_volume_ml(frac[0], band, 0.001)
    assert truth < 0.01  # no GM near the ventricle in the phantom
    assert gm_before > 0.02  # five classes read the wall as GM (the failure this class fixes)
    assert gm_after < 0.3 * gm_before
    # the cortex slab, far from the region, keeps its GM
    cortex = torch.zeros(SHAPE, dtype=torch.bool)
    cortex[2:11] = True
    torch.testing.assert_close(after.probs[0][cortex].sum(), before.probs[0][cortex].sum(), rtol=0.02, atol=0)
    assert after.info["classes"][-1] == "CSF/WM" and after.info["csf_wm_ml"] > 0
    torch.testing.assert_close(after.probs.sum(0)[mask], torch.ones(int(mask.sum())), atol=1e-5, rtol=0)
    assert before.info["csf_wm_ml"] == 0.0 and len(before.info["weights"]) == 5


def test_csf_wm_region_needs_priors_and_the_image_grid():
    image, mask, frac, ventricle = _wall_phantom()
    with pytest.raises(ImageError, match="needs spatial priors"):
        segment(image, mask, csf_wm_region=ventricle.float())
    with pytest.raises(ImageError, match=r"csf_wm_region must be \(X, Y, Z\)"):
        segment(image, mask, priors=_priors(frac), csf_wm_region=ventricle.float()[1:])


def test_dilation_and_band_equal_a_distance_transform():
    rng = np.random.default_rng(3)
    mask = np.zeros((20, 21, 22), bool)
    mask[tuple(rng.integers(3, 17, (3, 6)))] = True
    vox = (1.0, 1.5, 2.0)
    dist = ndimage.distance_transform_edt(~mask, sampling=vox)
    got = dilate_mm(torch.from_numpy(mask), 3.0, vox).numpy()
    np.testing.assert_array_equal(got, dist <= 3.0 + 1e-6)
    band = periventricular_band(torch.from_numpy(mask), vox, width_mm=3.0).numpy()
    np.testing.assert_array_equal(band, (dist <= 3.0 + 1e-6) & ~mask)
    region = csf_wm_region(torch.from_numpy(mask), vox, margin_mm=3.0).numpy()
    assert (region[dist <= 3.0] == 1.0).all() and (region[dist > 4.5 + 1e-6] == 0.0).all()
    assert float(region.min()) >= 0.0 and float(region.max()) <= 1.0
