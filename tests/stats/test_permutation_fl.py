"""Freedman-Lane max-statistic permutation inference (vbmkit.stats.permutation)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from tests.conftest import DEVICES
from vbmkit.errors import ConfigError, DesignError
from vbmkit.stats.design import Contrast
from vbmkit.stats.glm import fit
from vbmkit.stats.permutation import draw_permutations, freedman_lane


def _problem(n: int = 24, v: int = 13, seed: int = 0):
    rng = np.random.default_rng(seed)
    site = rng.integers(0, 3, n)
    age = rng.normal(50, 10, n)
    X = np.column_stack([np.ones(n), age, site == 1, site == 2, rng.normal(1500, 100, n)]).astype(float)
    Y = 0.5 + 0.002 * age[:, None] + 0.05 * rng.normal(size=(n, v))
    contrasts = [Contrast("age", np.array([0, 1, 0, 0, 0.0])), Contrast("-age", np.array([0, -1, 0, 0, 0.0])),
                 Contrast("site", np.array([[0, 0, 1, 0, 0], [0, 0, 0, 1, 0.0]]), "F")]
    return torch.from_numpy(Y.astype(np.float32)), X, contrasts


def _naive_max(Y: torch.Tensor, X: np.ndarray, contrast: Contrast, perms: torch.Tensor) -> np.ndarray:
    """Textbook Freedman-Lane: permute the reduced model's residuals, add its fit back, refit."""
    y = Y.double().numpy()
    z = X @ scipy.linalg.null_space(contrast.matrix)
    fitted = z @ np.linalg.lstsq(z, y, rcond=None)[0]
    maxima = []
    for perm in perms.numpy():
        y_perm = (y - fitted)[perm] + fitted
        maxima.append(fit(torch.from_numpy(y_perm.astype(np.float32)), X, [contrast])[contrast.name].stat.max())
    return np.array(maxima, dtype=np.float64)


def test_matches_textbook_freedman_lane():
    Y, X, contrasts = _problem()
    n_perm = 9
    out = freedman_lane(Y, X, contrasts, n_permutations=n_perm, seed=5, batch=4, memory_bytes=30_000)
    perms = draw_permutations(Y.shape[0], n_perm, seed=5)
    assert torch.equal(perms[0], torch.arange(Y.shape[0]))
    full = fit(Y, X, contrasts)
    for c in contrasts:
        res = out[c.name]
        assert res.max_null.shape == (n_perm,) and res.p_fwe.dtype == torch.float64
        torch.testing.assert_close(res.stat, full[c.name].stat, rtol=1e-4, atol=1e-5)
        # float32 vs refits on float32-rounded permuted data: 1e-4 relative is ample
        np.testing.assert_allclose(res.max_null.numpy(), _naive_max(Y, X, c, perms), rtol=1e-4)
        expected = (res.max_null.numpy()[None, :] >= res.stat.double().numpy()[:, None]).sum(1) / n_perm
        np.testing.assert_allclose(res.p_fwe.numpy(), expected)
        assert res.max_null[0].item() == pytest.approx(res.stat.max().item())  # identity first
        assert res.p_fwe.min().item() >= 1 / n_perm


def test_planted_effect_is_significant():
    rng = np.random.default_rng(1)
    n, v = 40, 30
    age = rng.normal(50, 10, n)
    X = np.column_stack([np.ones(n), age, rng.normal(size=n)])
    Y = rng.normal(size=(n, v))
    Y[:, 0] += 0.2 * (age - 50)
    out = freedman_lane(torch.from_numpy(Y.astype(np.float32)), X, [Contrast("age", np.array([0, 1, 0.0]))],
                        n_permutations=50, seed=0)
    assert out["age"].p_fwe[0].item() == pytest.approx(1 / 50)
    assert out["age"].p_fwe[1:].min().item() > 0.05


def test_errors():
    Y, X, contrasts = _problem()
    with pytest.raises(ConfigError, match="n_permutations: expected at least 2"):
        freedman_lane(Y, X, contrasts, n_permutations=1)
    with pytest.raises(DesignError, match="contrast 'mean' tests the mean"):
        freedman_lane(Y, X, [Contrast("mean", np.array([1, 0, 0, 0, 0.0]))], n_permutations=5)


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree(device):
    Y, X, contrasts = _problem(seed=2)
    cpu = freedman_lane(Y, X, contrasts, n_permutations=6)
    other = freedman_lane(Y, X, contrasts, n_permutations=6, device=device, memory_bytes=20_000)
    for name in cpu:
        torch.testing.assert_close(other[name].max_null, cpu[name].max_null, rtol=1e-4, atol=1e-5)
