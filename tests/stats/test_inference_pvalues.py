"""p values, thresholds and FDR q values (vbmkit.stats.inference)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from vbmkit.errors import ConfigError
from vbmkit.stats.inference import f_to_p, fdr_q, p_to_f, p_to_t, t_to_p


def test_t_to_p_is_one_sided_and_accurate_in_tails():
    t = torch.tensor([-3.0, 0.0, 2.5, 40.0], dtype=torch.float32)
    p = t_to_p(t, 30)
    assert p.dtype == torch.float64
    np.testing.assert_allclose(p.numpy(), scipy.stats.t.sf(t.double().numpy(), 30), rtol=1e-12)
    assert p[1].item() == pytest.approx(0.5) and 0 < p[3].item() < 1e-25  # no underflow to 0


def test_f_to_p():
    f = torch.tensor([0.0, 1.0, 7.5, 200.0])
    np.testing.assert_allclose(f_to_p(f, 3, 40).numpy(), scipy.stats.f.sf(f.numpy(), 3, 40), rtol=1e-12)


def test_thresholds_invert_p():
    thr = p_to_t(0.001, 100)
    assert thr == pytest.approx(3.174, abs=1e-3)
    assert t_to_p(torch.tensor([thr]), 100).item() == pytest.approx(0.001)
    assert f_to_p(torch.tensor([p_to_f(0.05, 2, 50)]), 2, 50).item() == pytest.approx(0.05)


def _bh_by_definition(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q from its definition: q_i = min over j with p_j >= p_i of m p_j / rank_j."""
    m = p.size
    q = np.empty(m)
    for i in range(m):
        q[i] = min(1.0, min(m * p[j] / (np.sum(p <= p[j])) for j in range(m) if p[j] >= p[i]))
    return q


def test_fdr_equals_the_definition_and_keeps_nan():
    """Against an independent computation (not the statsmodels call fdr_q wraps)."""
    p = np.random.default_rng(0).uniform(size=120) ** 3
    p[7] = np.nan
    q = fdr_q(torch.from_numpy(p))
    finite = np.isfinite(p)
    np.testing.assert_allclose(q[finite], _bh_by_definition(p[finite]), rtol=1e-12)
    assert np.isnan(q[7])


def test_fdr_known_answer():
    """Four p values worked by hand: m p / rank = 0.04, 0.04, 0.04, 0.8 -> monotone from the top."""
    q = fdr_q(np.array([0.01, 0.02, 0.03, 0.8]))
    np.testing.assert_allclose(q, [0.04, 0.04, 0.04, 0.8], rtol=1e-12)


def test_bad_arguments():
    with pytest.raises(ConfigError, match=r"p: expected a probability in \(0, 1\); got 1.5"):
        p_to_t(1.5, 10)
    with pytest.raises(ConfigError, match="df: expected a positive number of degrees of freedom; got 0"):
        t_to_p(torch.zeros(1), 0)
    with pytest.raises(ConfigError, match="df2: expected a positive"):
        p_to_f(0.1, 1, -1)
