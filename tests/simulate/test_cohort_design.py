"""Synthetic cohort: covariates, planted effects and their truth maps (pure parts)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.simulate.atrophy import displacement_jacobian, invert_displacement, shrink_field
from vbmkit.simulate.cohort import (
    CohortParameters,
    design_cohort,
    region_weight,
    subject_tissue,
    tissue_priors,
    true_effect_maps,
)

SHAPE = (14, 16, 18)  # unequal dimensions


def _template() -> torch.Tensor:
    x, y, z = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    r = (x**2 + y**2 + z**2).sqrt()
    wm = (1 - r / 0.4).clamp(0, 1)
    gm = ((0.8 - r) / 0.2).clamp(0, 1) * (1 - wm)
    rest = 1 - gm - wm
    return torch.stack([gm, wm, rest])


def _atlas() -> torch.Tensor:
    a = torch.zeros(SHAPE, dtype=torch.int64)
    a[:7, :, :] = 21  # left half
    a[7:, :, :] = 22
    a[:, :3, :] = 0
    return a


def test_priors_confine_csf_to_the_head():
    priors = tissue_priors(_template(), voxel_size_mm=6.0)  # a 14-voxel box is ~84 mm wide
    assert priors.shape == (3, *SHAPE)
    assert float(priors[2, 0, 0, 0]) == 0.0  # box corner: background, not CSF
    assert float(priors.sum(0).max()) <= 1.0 + 1e-6
    total = priors.sum(0)
    assert bool((((total - 1).abs() < 1e-5) | (total == 0)).all())  # as the phantom renders them
    full = _template()[:2].sum(0) > 0.999  # no CSF/background there: GM and WM are kept as they are
    assert torch.allclose(priors[:2][:, full], _template()[:2][:, full])
    assert float(priors[2, 7, 8, 9]) == 0.0  # centre is all WM


def test_design_balances_sex_and_group_and_scales_heads():
    design = design_cohort(_template(), _atlas(), n=40, generator=torch.Generator().manual_seed(3),
                           age_regions=[21], group_regions=[22])
    assert design.sex.count("M") == 20 and design.group.count("patient") == 20
    assert float(design.age.min()) >= 20 and float(design.age.max()) <= 80
    assert torch.equal(design.age, torch.round(design.age * 10) / 10)
    m = torch.tensor([s == "M" for s in design.sex])
    assert float(design.head_scale[m].mean()) > float(design.head_scale[~m].mean()) + 0.05
    again = design_cohort(_template(), _atlas(), n=40, generator=torch.Generator().manual_seed(3),
                          age_regions=[21], group_regions=[22])
    assert torch.equal(again.age, design.age) and again.sex == design.sex  # seeded


def test_planted_effects_shrink_tissue_as_the_truth_maps_say():
    params = CohortParameters(anatomy_sd=0.0)  # no anatomy noise: GM_individual == prior exactly
    design = design_cohort(_template(), _atlas(), n=4, generator=torch.Generator().manual_seed(0),
                           age_regions=[21], group_regions=[22], parameters=params)
    design = dataclasses.replace(design, age=torch.tensor([20.0, 22.0, 20.0, 20.0], dtype=torch.float64),
                                 group=["control", "control", "control", "control"])
    young, older = (subject_tissue(design, i, generator=torch.Generator().manual_seed(9)) for i in range(2))
    truth = true_effect_maps(design)
    # no loss at the youngest age: anatomy and truth are the (sharpened) template
    assert torch.equal(young.anatomy, young.modulated)
    # two years: a 1 % loss, where the first-order truth maps hold to a small fraction of the change
    change = older.modulated[0] - young.modulated[0]
    assert float((change - 2 * truth["age"]).abs().max()) < 0.05 * float((2 * truth["age"]).abs().max())
    assert float(change.sum()) < 0 and float(change.sum()) == pytest.approx(float(2 * truth["age"].sum()), rel=0.05)
    # the anatomy keeps its volume: native GM of the shrunk anatomy == modulated GM (interpolation only)
    assert float(older.anatomy[0].sum()) == pytest.approx(float(older.modulated[0].sum()), rel=2e-3)
    # tissue moves, the intracranial space does not: CSF fills what GM and WM leave
    assert torch.allclose(older.anatomy.sum(0), young.anatomy.sum(0), atol=1e-5)
    assert float(older.anatomy[2].sum()) > float(young.anatomy[2].sum())
    assert float(truth["age"][9:, :, :].abs().max()) < 0.2 * float(truth["age"].abs().max())  # far from region 21
    assert float(truth["age"].min()) < -1e-4 and float(truth["group"].min()) < -1e-3


def test_atrophy_field_has_the_prescribed_divergence():
    w = torch.zeros(24, 26, 28)
    w[8:16, 9:17, 10:18] = 1.0
    w = smooth_fwhm(w[None, None], 4.0, (1.0, 1.0, 1.0))[0, 0]
    v = shrink_field(w)
    div = sum(torch.gradient(v[i], dim=i)[0] for i in range(3))
    inner = (slice(3, -3),) * 3
    assert float((div - w)[inner].abs().max()) < 0.05  # wide vs 7-point stencil of a smooth source
    jac = displacement_jacobian(0.2 * v)
    back = displacement_jacobian(invert_displacement(0.2 * v))
    centre = (12, 13, 14)
    assert float(jac[centre]) == pytest.approx(1.2, abs=0.03)  # pulled tissue shrinks ~1 / 1.2
    assert float(back[centre]) == pytest.approx(1 / float(jac[centre]), rel=0.02)


def test_anatomy_field_varies_gm_between_subjects():
    design = design_cohort(_template(), _atlas(), n=4, generator=torch.Generator().manual_seed(0),
                           age_regions=[21], group_regions=[22])
    a = subject_tissue(design, 0, generator=torch.Generator().manual_seed(1)).anatomy
    b = subject_tissue(design, 0, generator=torch.Generator().manual_seed(2)).anatomy
    assert float((a[0] - b[0]).abs().max()) > 1e-3
    assert float(a.min()) >= 0.0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="missing \\[99\\]"):
        region_weight(_atlas(), [21, 99])
    with pytest.raises(ValueError, match="n: expected at least 4"):
        design_cohort(_template(), _atlas(), n=3, generator=torch.Generator(), age_regions=[21],
                      group_regions=[22])
    with pytest.raises(ValueError, match="atlas: expected the template's grid"):
        design_cohort(_template(), _atlas()[:-1], n=8, generator=torch.Generator(), age_regions=[21],
                      group_regions=[22])
    with pytest.raises(ValueError, match="template: expected \\(3, X, Y, Z\\)"):
        tissue_priors(torch.zeros(2, *SHAPE))
