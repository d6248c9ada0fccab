"""Full-sample GLM against statsmodels OLS, voxel by voxel (vbmkit.stats.glm)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
import torch

from tests.conftest import DEVICES
from vbmkit.errors import DesignError
from vbmkit.stats.design import Contrast
from vbmkit.stats.glm import fit

# float32 data with centred Y and standardised columns: ~1e-6 relative error is typical;
# 1e-4 is the project's accuracy requirement.
RTOL = 1e-4


def _problem(seed: int, n: int = 37, v: int = 9, intercept: bool = True):
    rng = np.random.default_rng(seed)
    site = rng.integers(0, 3, n)
    age = rng.normal(50, 12, n)
    tiv = rng.normal(1500, 120, n)
    if intercept:
        X = np.column_stack([np.ones(n), age, site == 1, site == 2, tiv]).astype(float)
        cols = ["Intercept", "age", "site[T.1]", "site[T.2]", "TIV"]
        contrasts = [
            Contrast("age", np.array([0, 1, 0, 0, 0.0])),
            Contrast("-age", np.array([0, -1, 0, 0, 0.0])),
            Contrast("s1-s2", np.array([0, 0, 1, -1, 0.0])),
            Contrast("site", np.array([[0, 0, 1, 0, 0], [0, 0, 0, 1, 0.0]]), "F"),
            Contrast("mean", np.array([1, 0, 0, 0, 0.0])),
        ]
    else:  # cell-means coding: no intercept column, the constant is still in the span
        X = np.column_stack([site == 0, site == 1, site == 2, age]).astype(float)
        cols = ["s0", "s1", "s2", "age"]
        contrasts = [Contrast("s0-s2", np.array([1, 0, -1, 0.0])), Contrast("age", np.array([0, 0, 0, 1.0])),
                     Contrast("sites", np.array([[1, -1, 0, 0], [0, 1, -1, 0.0]]), "F")]
    # GM-like data: a large mean and a small age effect, so centring matters in float32
    Y = 0.6 + 0.002 * (age[:, None] - 50) + 0.05 * rng.normal(size=(n, v)) + 0.01 * (site[:, None] == 2)
    return torch.from_numpy(Y.astype(np.float32)), X, cols, contrasts


def _reference(Y: torch.Tensor, X: np.ndarray, contrast: Contrast, v: int):
    model = sm.OLS(Y[:, v].double().numpy(), X).fit()
    if contrast.kind == "t":
        test = model.t_test(contrast.matrix)
        t = float(np.ravel(test.tvalue)[0])
        p_two = float(np.ravel(test.pvalue)[0])
        p_one = p_two / 2 if t > 0 else 1 - p_two / 2
        return t, p_one, float(np.ravel(test.effect)[0])
    test = model.f_test(contrast.matrix)
    return float(np.ravel(test.fvalue)[0]), float(np.ravel(test.pvalue)[0]), None


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("intercept", [True, False])
def test_matches_statsmodels_voxel_by_voxel(seed, intercept):
    Y, X, cols, contrasts = _problem(seed, intercept=intercept)
    calls = []
    # a tiny budget forces several voxel blocks
    maps = fit(Y, X, contrasts, columns=cols, memory_bytes=2500, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (Y.shape[1], Y.shape[1]) and len(calls) > 1
    n, p = X.shape
    for c in contrasts:
        m = maps[c.name]
        assert m.df == (float(c.matrix.shape[0]), float(n - p))
        for v in range(Y.shape[1]):
            stat, pval, effect = _reference(Y, X, c, v)
            np.testing.assert_allclose(m.stat[v].item(), stat, rtol=RTOL)
            np.testing.assert_allclose(m.p[v].item(), pval, rtol=RTOL)
            if effect is not None:
                np.testing.assert_allclose(m.effect[v].item(), effect, rtol=RTOL)


def test_std_effects_and_p_dtype():
    Y, X, cols, contrasts = _problem(3)
    maps = fit(Y, X, contrasts, columns=cols)
    df2 = X.shape[0] - X.shape[1]
    age = maps["age"]
    assert age.p.dtype == torch.float64 and age.stat.dtype == torch.float32 and age.stat.shape == (Y.shape[1],)
    # partial correlation of Y and age given the other columns, from residuals
    others = np.delete(X, 1, axis=1)
    res_x = X[:, 1] - others @ np.linalg.lstsq(others, X[:, 1], rcond=None)[0]
    y = Y[:, 0].double().numpy()
    res_y = y - others @ np.linalg.lstsq(others, y, rcond=None)[0]
    r = np.corrcoef(res_x, res_y)[0, 1]
    np.testing.assert_allclose(age.std_effect[0].item(), r, rtol=RTOL)
    # '-age' tests the other direction: same |t|, complementary one-sided p
    torch.testing.assert_close(maps["-age"].stat, -age.stat)
    torch.testing.assert_close(maps["-age"].p, 1 - age.p, rtol=0, atol=1e-6)
    site = maps["site"]
    eta = site.stat * 2 / (site.stat * 2 + df2)
    torch.testing.assert_close(site.std_effect, eta)
    # F effect: sqrt(extra sum of squares / N) from the reduced model
    reduced = X[:, [0, 1, 4]]
    ess = np.sum((y - reduced @ np.linalg.lstsq(reduced, y, rcond=None)[0]) ** 2) - np.sum(
        (y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2)
    np.testing.assert_allclose(site.effect[0].item(), np.sqrt(ess / X.shape[0]), rtol=1e-3)


def test_constant_voxel_gives_zero_statistic():
    Y, X, cols, contrasts = _problem(4)
    Y[:, 2] = 0.5
    maps = fit(Y, X, contrasts[:1], columns=cols)
    assert maps["age"].stat[2].item() == 0.0 and np.isfinite(maps["age"].stat.numpy()).all()


def test_shape_errors():
    Y, X, cols, contrasts = _problem(5)
    with pytest.raises(DesignError, match=r"Y has 36 rows \(subjects\) but the design matrix has shape \(37, 5\)"):
        fit(Y[:-1], X, contrasts, columns=cols)
    with pytest.raises(DesignError, match="Y: expected a 2-D torch tensor"):
        fit(Y.numpy(), X, contrasts, columns=cols)
    with pytest.raises(DesignError, match="contrast 'bad': has 2 columns; expected 5"):
        fit(Y, X, [Contrast("bad", np.ones(2))], columns=cols)


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree(device):
    Y, X, cols, contrasts = _problem(6)
    cpu = fit(Y, X, contrasts, columns=cols)
    other = fit(Y, X, contrasts, columns=cols, device=device, memory_bytes=5000)
    for name in cpu:
        torch.testing.assert_close(other[name].stat, cpu[name].stat, rtol=1e-4, atol=1e-5)
