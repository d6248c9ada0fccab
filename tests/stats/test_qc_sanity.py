"""Robust z-scores and per-subject map summaries (vbmkit.stats.qc), against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vbmkit.stats.qc import map_sanity, robust_z


def test_robust_z_matches_median_and_mad():
    x = np.array([1.0, 2.0, 2.5, 3.0, 4.0, 40.0])
    med = np.median(x)  # even N: mean of the two middle values, 2.75
    mad = np.median(np.abs(x - med))
    np.testing.assert_allclose(robust_z(torch.tensor(x)).numpy(), (x - med) / (1.4826 * mad), rtol=1e-12)


def test_robust_z_when_the_mad_is_zero():
    x = np.array([1.0, 1.0, 1.0, 1.0, 3.0])  # MAD 0: 1.2533 x mean absolute deviation (0.4)
    np.testing.assert_allclose(robust_z(torch.tensor(x)).numpy(), (x - 1.0) / (1.2533 * 0.4), rtol=1e-12)
    assert robust_z(torch.ones(4)).abs().max() == 0


def test_map_sanity_summaries_by_blocks():
    data = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.2], [0.1, 0.2, 0.3, 0.4]])
    s = map_sanity(data, block=3)  # blocks of 3 rows: the last block has one
    assert s.n_voxels == 4
    np.testing.assert_array_equal(s.constant.numpy(), [True, True, False, False])
    np.testing.assert_allclose(s.nonzero_fraction.numpy(), [0.0, 1.0, 0.25, 1.0])
    np.testing.assert_allclose(s.mean.numpy(), [0.0, 0.5, 0.05, 0.25], rtol=1e-7)
    np.testing.assert_allclose(s.first_value.numpy(), [0.0, 0.5, 0.0, 0.1], rtol=1e-7)
    with pytest.raises(ValueError, match=r"data: expected \(N, V\) maps with V >= 1; got shape \(3,\)"):
        map_sanity(torch.ones(3))
