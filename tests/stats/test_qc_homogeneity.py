"""Sample homogeneity: correlation in chunks equals numpy's, outliers are flagged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import DEVICES
from vbmkit.stats.qc import correlation_matrix, sample_homogeneity


def _cohort(rng: torch.Generator, n: int = 12, v: int = 997) -> torch.Tensor:
    base = torch.rand(v, generator=rng, dtype=torch.float64) + 3.0  # large mean: tests cancellation
    return (base + 0.3 * torch.randn(n, v, generator=rng, dtype=torch.float64)).float()


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_correlation_equals_numpy(rng, device):
    y = _cohort(rng)
    chunks = [y[:, i:i + 100] for i in range(0, y.shape[1], 100)]  # last chunk is shorter
    seen = []
    corr = correlation_matrix(chunks, device=device, progress=seen.append)
    expected = np.corrcoef(y.double().numpy())
    # float32 inputs, float64 accumulation: agreement far below any QC-relevant difference
    np.testing.assert_allclose(corr.cpu().numpy(), expected, atol=1e-10)
    assert sum(seen) == y.shape[1]


def test_outlier_is_flagged(rng):
    y = _cohort(rng, n=15)
    y[4] = torch.rand(y.shape[1], generator=rng) * 4  # unrelated map: a failed subject
    h = sample_homogeneity(correlation_matrix([y]), sd_threshold=2.0)
    assert h.flagged.tolist() == [i == 4 for i in range(15)]
    assert float(h.mean_correlation[4]) < h.threshold < float(h.mean_correlation.max())
    # mean excludes the diagonal: a hand computation for subject 0
    r = np.corrcoef(y.double().numpy())
    assert float(h.mean_correlation[0]) == pytest.approx((r[0].sum() - 1) / 14, abs=1e-10)
    assert float(h.zscore[4]) < -2


def test_identical_subjects_flag_nobody():
    y = torch.arange(20.0).repeat(5, 1)
    h = sample_homogeneity(correlation_matrix([y]))
    assert not h.flagged.any()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="rows \\[1\\] are constant"):
        correlation_matrix([torch.stack([torch.arange(5.0), torch.ones(5)])])
    with pytest.raises(ValueError, match="at least one voxel"):
        correlation_matrix([])
    with pytest.raises(ValueError, match="expected 3 rows in every block; got 2"):
        correlation_matrix([torch.rand(3, 4), torch.rand(2, 4)])
    with pytest.raises(ValueError, match="at least 3 subjects"):
        sample_homogeneity(torch.eye(2))
    with pytest.raises(ValueError, match="sd_threshold"):
        sample_homogeneity(torch.eye(4), sd_threshold=0)
