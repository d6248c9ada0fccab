"""Synthetic T1 phantoms: truth consistent with the rendered image, reproducible, clear errors."""

from __future__ import annotations

import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.simulate.phantom import make_phantom, smooth_random_field, tissue_from_template


def _shells(shape=(17, 18, 19)) -> torch.Tensor:
    """GM, WM, CSF fractions of nested balls: WM core, GM shell, CSF shell, empty outside."""
    axes = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in shape]
    r = torch.sqrt(sum(a ** 2 for a in torch.meshgrid(*axes, indexing="ij")))
    wm = (4.0 - r).clamp(0, 1)
    gm = (6.0 - r).clamp(0, 1) - wm
    csf = (7.5 - r).clamp(0, 1) - wm - gm
    return torch.stack([gm, wm, csf])


def test_truth_matches_fractions_without_deformation():
    maps = _shells()
    ph = make_phantom(maps, generator=torch.Generator().manual_seed(0), deformation_mm=0.0,
                      bias_strength=0.0, noise_sd=0.0, sharpen=1.0)
    assert ph.t1.shape == maps.shape[1:] and ph.tissue.shape == maps.shape
    # no deformation: the fractions come back (interpolation at integer voxels is exact)
    inside = ph.brain_mask
    torch.testing.assert_close(ph.tissue[:, inside], (maps / maps.sum(0).clamp_min(1e-6))[:, inside],
                               atol=1e-5, rtol=0)
    # the image is the fraction-weighted mean intensity (no bias, no noise)
    expected = (ph.tissue * ph.means.reshape(3, 1, 1, 1)).sum(0)
    torch.testing.assert_close(ph.t1, expected, atol=1e-6, rtol=0)
    # labels: CAT12 codes of the argmax inside the mask, 0 outside
    codes = torch.tensor([2, 3, 1])[ph.tissue.argmax(0)]
    assert torch.equal(ph.labels[inside], codes[inside])
    assert int(ph.labels[~inside].abs().sum()) == 0
    assert set(torch.unique(ph.labels).tolist()) == {0, 1, 2, 3}


def test_deformation_bias_noise_and_reproducibility():
    maps = _shells()
    kw = dict(deformation_mm=2.0, bias_strength=0.2, noise_sd=0.02)
    a = make_phantom(maps, generator=torch.Generator().manual_seed(3), **kw)
    b = make_phantom(maps, generator=torch.Generator().manual_seed(3), **kw)
    c = make_phantom(maps, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a.t1, b.t1) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.t1, c.t1)
    # the largest displacement is the requested one (1 mm voxels); the bias spans exp(+-0.2)
    assert float(a.displacement.norm(dim=0).max()) == pytest.approx(2.0, rel=1e-4)
    assert float(a.bias.log().abs().max()) == pytest.approx(0.2, rel=1e-4)
    sums = a.tissue.sum(0)[a.brain_mask]
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)


def test_tissue_from_template_limits_csf_to_the_head():
    g = torch.zeros(3, 9, 8, 7)
    g[2] = 1.0  # "rest" everywhere
    g[0, 3:6, 3:5, 2:5] = 0.7
    g[2, 3:6, 3:5, 2:5] = 0.3
    t = tissue_from_template(g, dilate_vox=1)
    inside = t.sum(0) > 0
    assert bool(inside[4, 4, 3]) and not bool(inside[0, 0, 0])
    torch.testing.assert_close(t.sum(0)[inside], torch.ones(int(inside.sum())), atol=1e-6, rtol=0)
    assert float(t[2, 2, 2, 2]) == pytest.approx(1.0)  # dilated rim: rest counts as CSF


def test_smooth_random_field_is_bounded():
    f = smooth_random_field((10, 11, 12), 4.0, generator=torch.Generator().manual_seed(0), channels=2)
    assert f.shape == (2, 10, 11, 12)
    assert float(f.abs().amax()) == pytest.approx(1.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(noise="poisson"), "noise must be 'rician' or 'gaussian'"),
    (dict(noise_sd=-1.0), "must be >= 0"),
    (dict(sharpen=0.0), "sharpen must be > 0"),
])
def test_make_phantom_errors(kwargs, match):
    with pytest.raises(ImageError, match=match):
        make_phantom(_shells(), generator=torch.Generator().manual_seed(0), **kwargs)


def test_shape_errors():
    with pytest.raises(ImageError, match=r"tissue_maps must be \(3, X, Y, Z\)"):
        make_phantom(torch.zeros(2, 4, 4, 4), generator=torch.Generator())
    with pytest.raises(ImageError, match="expected \\(3, X, Y, Z\\) GM, WM, rest"):
        tissue_from_template(torch.zeros(4, 4, 4))
