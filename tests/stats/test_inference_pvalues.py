"""p values, thresholds and FDR q values (vbmkit.stats.inference)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from statsmodels.stats.multitest import multipletests

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


def test_fdr_matches_statsmodels_and_keeps_nan():
    p = np.random.default_rng(0).uniform(size=200) ** 3
    p[7] = np.nan
    q = fdr_q(torch.from_numpy(p))
    finite = np.isfinite(p)
    np.testing.assert_allclose(q[finite], multipletests(p[finite], method="fdr_bh")[1], rtol=1e-12)
    assert np.isnan(q[7])


def test_bad_arguments():
    with pytest.raises(ConfigError, match=r"p: expected a probability in \(0, 1\); got 1.5"):
        p_to_t(1.5, 10)
    with pytest.raises(ConfigError, match="df: expected a positive number of degrees of freedom; got 0"):
        t_to_p(torch.zeros(1), 0)
    with pytest.raises(ConfigError, match="df2: expected a positive"):
        p_to_f(0.1, 1, -1)
