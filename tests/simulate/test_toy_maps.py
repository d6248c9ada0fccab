"""The toy cohort of ``vbmkit demo``: reproducible, bounded, with the planted age slope."""

from __future__ import annotations

import numpy as np
import torch

from vbmkit.simulate.toy_maps import make_toy_cohort


def test_toy_cohort_shapes_seed_and_slope():
    a = make_toy_cohort(40, shape=(16, 18, 17), seed=3, noise_sd=0.01)
    b = make_toy_cohort(40, shape=(16, 18, 17), seed=3, noise_sd=0.01)
    assert a.maps.shape == (40, 16, 18, 17) and a.maps.dtype == torch.float32
    assert torch.equal(a.maps, b.maps) and a.sex == b.sex
    assert float(a.maps.min()) >= 0 and float(a.maps.max()) <= 1
    assert not torch.equal(a.maps, make_toy_cohort(40, shape=(16, 18, 17), seed=4).maps)
    # least-squares slope of the peak voxel over age recovers the planted effect per year
    y = a.maps[(slice(None), *a.peak_ijk)].double().numpy()
    slope = np.polyfit(a.age.numpy(), y, 1)[0]
    planted = float(a.truth[a.peak_ijk])
    assert planted < 0 and abs(slope - planted) < 0.25 * abs(planted)  # noise SD 0.01 over 40 subjects
    assert bool((a.truth[~a.brain] == 0).all())
