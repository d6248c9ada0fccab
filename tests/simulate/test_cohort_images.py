"""Simulated subjects with T1 images: head scale through the voxel size, truth consistency."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.simulate.test_cohort_design import SHAPE, _atlas, _template
from vbmkit.simulate.cohort import CohortParameters, design_cohort, simulate_subject


def _design(**kw):
    params = CohortParameters(deformation_mm=0.0, bias_strength=0.0, noise_sd=0.0, **kw)
    return design_cohort(_template(), _atlas(), n=4, generator=torch.Generator().manual_seed(0),
                         age_regions=[21], group_regions=[22], parameters=params)


def test_native_volume_equals_modulated_truth_without_deformation():
    design = _design()
    # youngest control: no atrophy field, so nothing but the head scale separates native and truth
    design = dataclasses.replace(design, age=torch.full((4,), 20.0, dtype=torch.float64), group=["control"] * 4)
    subj = simulate_subject(design, 1, generator=torch.Generator().manual_seed(5))
    s = float(design.head_scale[1])
    assert subj.t1 is not None and tuple(subj.t1.shape) == SHAPE
    assert subj.voxel_size_mm == pytest.approx(1.5 * s)
    # Without deformation the native maps are the template-space maps on a grid scaled by s:
    # native mL = sum(native) * (1.5 s)^3 / 1000 = sum(modulated) * 1.5^3 / 1000 (modulated = s^3 maps).
    # float32 maps summed in float64: agreement to ~1e-6 relative.
    mod_gm = float(subj.modulated[0].double().sum()) * 1.5**3 / 1000
    assert subj.volumes_ml["gm_ml"] == pytest.approx(mod_gm, rel=1e-5)
    assert subj.volumes_ml["tiv_ml"] == pytest.approx(
        sum(subj.volumes_ml[k] for k in ("gm_ml", "wm_ml", "csf_ml")), rel=1e-12)


def test_truth_is_the_same_with_and_without_images():
    design = _design()
    with_images = simulate_subject(design, 2, generator=torch.Generator().manual_seed(7))
    truth_only = simulate_subject(design, 2, generator=torch.Generator().manual_seed(7), images=False)
    assert truth_only.t1 is None
    assert torch.equal(with_images.modulated, truth_only.modulated)


def test_bigger_heads_have_larger_volumes():
    design = _design()
    design = dataclasses.replace(design, head_scale=torch.tensor([0.9, 1.1, 1.0, 1.0], dtype=torch.float64),
                                 age=torch.full((4,), 50.0, dtype=torch.float64), group=["control"] * 4)
    small = simulate_subject(design, 0, generator=torch.Generator().manual_seed(1))
    big = simulate_subject(design, 1, generator=torch.Generator().manual_seed(1))
    # same anatomy (same seed), scale only: TIV ratio (1.1 / 0.9)^3 exactly up to float32 rounding
    assert big.volumes_ml["tiv_ml"] / small.volumes_ml["tiv_ml"] == pytest.approx((1.1 / 0.9) ** 3, rel=1e-5)


def test_upsampled_working_resolution():
    design = _design(voxel_size_mm=1.0)
    subj = simulate_subject(design, 0, generator=torch.Generator().manual_seed(1))
    assert tuple(subj.t1.shape) == tuple(round(n * 1.5) for n in SHAPE)
    assert tuple(subj.modulated.shape[1:]) == SHAPE  # truth stays on the template grid


def test_index_out_of_range():
    with pytest.raises(ValueError, match="index: expected 0 <= index < 4; got 4"):
        simulate_subject(_design(), 4, generator=torch.Generator())
