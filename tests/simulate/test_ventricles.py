"""Ventricles widening with age in the simulated cohort: WM recedes, CSF fills, GM untouched."""

from __future__ import annotations

import math

import pytest
import torch

from vbmkit.simulate.cohort import CohortParameters, design_cohort, subject_tissue
from vbmkit.simulate.ventricles import ventricle_field, widen_ventricles

SHAPE = (30, 30, 30)


def _ball(radius: float) -> torch.Tensor:
    axes = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in SHAPE]
    r = torch.sqrt(sum(a ** 2 for a in torch.meshgrid(*axes, indexing="ij")))
    return r <= radius


def _tissue(radius: float = 5.0) -> torch.Tensor:
    """WM everywhere with a CSF ball (the ventricle) in the middle and a GM slab at one side."""
    csf = _ball(radius).float()
    gm = torch.zeros(SHAPE)
    gm[:4] = 1.0
    return torch.stack([gm, 1.0 - gm - csf, csf])


def test_field_points_into_the_ventricle_with_unit_norm_at_the_wall():
    ventricle = _ball(5.0)
    v = ventricle_field(ventricle)
    assert v.shape == (3, *SHAPE)
    assert float(v.norm(dim=0).max()) == pytest.approx(1.0)
    # on the +x axis just outside the wall the field points back to the centre (-x)
    c = (SHAPE[0] - 1) / 2
    x = int(math.ceil(c + 5.5))
    assert float(v[0, x, 15, 15]) < -0.3
    assert float(v.norm(dim=0)[0, 15, 15]) < 0.05  # fades far from the wall


def test_widening_moves_wm_to_csf_and_keeps_gm():
    tissue = _tissue()
    v = ventricle_field(_ball(5.0))
    wide = widen_ventricles(tissue, 1.0 * v)
    torch.testing.assert_close(wide[0], tissue[0], rtol=0, atol=0)  # GM untouched
    torch.testing.assert_close(wide.sum(0), tissue.sum(0))  # every voxel keeps its total
    assert (wide[1] <= tissue[1] + 1e-6).all()  # WM only recedes
    gained = float(wide[2].sum() - tissue[2].sum())
    surface = 4 * math.pi * 5.0 ** 2  # a 1-voxel move of a radius-5 ball's wall: ~ its surface
    assert 0.5 * surface < gained < 1.5 * surface


def test_cohort_ventricles_grow_with_age_and_gm_does_not():
    template = torch.stack([_tissue()[0] * 0.9, _tissue()[1], _tissue()[2]])
    atlas = torch.zeros(SHAPE, dtype=torch.int64)
    atlas[:4, :15] = 1
    atlas[:4, 15:] = 2
    params = CohortParameters(age_effect_per_year=0.0, group_effect=0.0, anatomy_sd=0.0, sharpen=1.0,
                              ventricle_widening_mm_per_year=0.05)
    design = design_cohort(template, atlas, n=6, generator=torch.Generator().manual_seed(0), age_regions=[1],
                           group_regions=[2], parameters=params, ventricles=_ball(5.0))
    old, young = int(design.age.argmax()), int(design.age.argmin())
    t_old = subject_tissue(design, old, generator=torch.Generator().manual_seed(1)).modulated
    t_young = subject_tissue(design, young, generator=torch.Generator().manual_seed(1)).modulated
    assert float(t_old[2].sum()) > float(t_young[2].sum())  # more CSF in the older subject
    torch.testing.assert_close(t_old[0], t_young[0])  # and exactly the same GM
    with pytest.raises(ValueError, match="ventricles"):
        design_cohort(template, atlas, n=6, generator=torch.Generator().manual_seed(0), age_regions=[1],
                      group_regions=[2], parameters=params)
