"""Subsample draws and the batched subsample fits (vbmkit.stats.subsample)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import DEVICES
from vbmkit.errors import ConfigError, DesignError
from vbmkit.stats.design import Contrast
from vbmkit.stats.glm import fit
from vbmkit.stats.subsample import draw_subsamples, fit_subsamples, quantile_sorted


def _problem(n: int = 40, v: int = 11, seed: int = 0):
    rng = np.random.default_rng(seed)
    group = np.array([0] * (n - 4) + [1] * 4)  # a rare group of 4
    rng.shuffle(group)
    age = rng.normal(40, 10, n)
    X = np.column_stack([np.ones(n), age, group]).astype(float)
    Y = 0.5 + 0.003 * age[:, None] + 0.04 * rng.normal(size=(n, v)) + 0.02 * group[:, None]
    contrasts = [Contrast("age", np.array([0, 1, 0.0])), Contrast("both", np.eye(3)[1:], "F")]
    return torch.from_numpy(Y.astype(np.float32)), X, group, contrasts


def test_draws_are_reproducible_and_of_equal_size():
    w = draw_subsamples(50, k=20, fraction=0.8, seed=3)
    assert w.shape == (20, 50) and w.dtype == torch.bool
    assert (w.sum(1) == 40).all()
    assert torch.equal(w, draw_subsamples(50, k=20, fraction=0.8, seed=3))
    assert not torch.equal(w, draw_subsamples(50, k=20, fraction=0.8, seed=4))
    assert len({tuple(row.tolist()) for row in w}) == 20  # distinct draws


def test_stratified_draws_never_miss_a_rare_group():
    strata = np.array(["hc"] * 97 + ["rare"] * 3)
    w = draw_subsamples(100, k=300, fraction=0.6, strata=strata, seed=0)
    rare = torch.from_numpy(strata == "rare")
    per_draw = (w & rare).sum(1)
    assert (per_draw == 2).all()  # round(0.6 * 3) = 2 of the 3, in every draw
    assert (w.sum(1) == 58 + 2).all()  # round(0.6 * 97) = 58
    # without strata the rare group is absent from ~6 % of such draws
    plain = draw_subsamples(100, k=300, fraction=0.6, seed=0)
    assert ((plain & rare).sum(1) == 0).any()


def test_draw_errors():
    with pytest.raises(ConfigError, match=r"fraction: expected a share of the subjects in \(0, 1\]; got 1.5"):
        draw_subsamples(10, fraction=1.5)
    with pytest.raises(ConfigError, match="subsamples: expected at least 1 draw; got 0"):
        draw_subsamples(10, k=0)
    with pytest.raises(DesignError, match=r"leaves 2 per draw; expected at least 6"):
        draw_subsamples(10, fraction=0.2, min_subjects=6)
    with pytest.raises(ConfigError, match=r"strata: expected one label per subject \(10\)"):
        draw_subsamples(10, strata=np.zeros(9))


def test_quantiles_follow_numpy():
    values = torch.randn(10, 7, generator=torch.Generator().manual_seed(0))
    ordered = values.sort(0).values
    for q in (0.25, 0.5, 0.75):
        np.testing.assert_allclose(quantile_sorted(ordered, q).numpy(), np.quantile(values.numpy(), q, axis=0),
                                   rtol=1e-6)


@pytest.mark.parametrize("k", [10, 11])
def test_median_map_equals_a_plain_loop(k):
    Y, X, group, contrasts = _problem()
    w = draw_subsamples(Y.shape[0], k=k, fraction=0.75, strata=group, seed=1)
    out = fit_subsamples(Y, X, contrasts, w, thresholds={"age": 2.0, "both": 4.0}, return_all=True,
                         memory_bytes=20_000)
    loop = {c.name: [] for c in contrasts}
    for row in w:
        idx = row.numpy()
        for name, maps in fit(Y[idx], X[idx], contrasts).items():
            loop[name].append(maps.stat.numpy())
    for c in contrasts:
        stats = np.stack(loop[c.name])  # (K, V) from K independent fits
        got = out[c.name]
        # float32 sums in a different order: agreement to ~1e-6 relative, 1e-4 is the gate
        np.testing.assert_allclose(got.all_stats.numpy(), stats, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.median.numpy(), np.median(stats, 0), rtol=1e-4, atol=1e-5)
        iqr = np.percentile(stats, 75, 0) - np.percentile(stats, 25, 0)
        np.testing.assert_allclose(got.iqr.numpy(), iqr, rtol=1e-4, atol=1e-5)
        thr = 2.0 if c.name == "age" else 4.0
        np.testing.assert_allclose(got.stability.numpy(), (stats > thr).mean(0), atol=1e-6)
        assert got.df == (float(c.matrix.shape[0]), float(w[0].sum().item() - X.shape[1]))


def test_even_median_is_mean_of_middle_values():
    Y, X, group, contrasts = _problem(seed=2)
    w = draw_subsamples(Y.shape[0], k=4, fraction=0.8, strata=group, seed=0)
    out = fit_subsamples(Y, X, contrasts[:1], w, thresholds={"age": 0.0}, return_all=True)
    ordered = out["age"].all_stats.sort(0).values
    torch.testing.assert_close(out["age"].median, (ordered[1] + ordered[2]) / 2)
    assert out["age"].all_stats is not None
    assert fit_subsamples(Y, X, contrasts[:1], w, thresholds={"age": 0.0})["age"].all_stats is None


def test_errors_name_the_problem():
    Y, X, group, contrasts = _problem()
    w = draw_subsamples(Y.shape[0], k=5, fraction=0.8, strata=group)
    with pytest.raises(ConfigError, match=r"thresholds: expected a value for every contrast; missing \['both'\]"):
        fit_subsamples(Y, X, contrasts, w, thresholds={"age": 2.0})
    with pytest.raises(ConfigError, match=r"weights: expected shape \(K, 40\)"):
        fit_subsamples(Y, X, contrasts, w[:, :-1], thresholds={"age": 2.0, "both": 3.0})
    # a draw without the rare group leaves the design rank deficient
    w_bad = torch.ones((2, Y.shape[0]), dtype=torch.bool)
    w_bad[1, torch.from_numpy(group == 1)] = False
    with pytest.raises(DesignError, match=r"subsample 1: the design restricted to its 36 subjects is rank deficient.*x2"):
        fit_subsamples(Y, X, contrasts, w_bad, thresholds={"age": 2.0, "both": 3.0})


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree(device):
    Y, X, group, contrasts = _problem(seed=3)
    w = draw_subsamples(Y.shape[0], k=6, strata=group)
    thr = {"age": 2.0, "both": 4.0}
    cpu = fit_subsamples(Y, X, contrasts, w, thresholds=thr)
    other = fit_subsamples(Y, X, contrasts, w, thresholds=thr, device=device, memory_bytes=30_000)
    for name in cpu:
        torch.testing.assert_close(other[name].median, cpu[name].median, rtol=1e-4, atol=1e-5)
