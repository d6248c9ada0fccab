"""map_agreement leaves NaN ('no data') voxels out of its mask, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from vbmkit.stats.agreement import map_agreement


def test_nan_voxels_fail_the_mask_rule():
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, (7, 8, 9))
    b = a + rng.normal(0, 0.2, a.shape)
    b[:, :, 7:] = np.nan  # SPM12's outside the field of view
    a[0, 0, 0] = np.nan
    res = map_agreement(torch.tensor(a), torch.tensor(b))
    keep = np.isfinite(a) & np.isfinite(b)
    keep &= (np.nan_to_num(a) + np.nan_to_num(b)) / 2 > 0.1
    assert int(res["n_voxels"]) == int(keep.sum())
    assert float(res["r"]) == pytest.approx(stats.pearsonr(a[keep], b[keep])[0], abs=1e-12)
