"""Exhaustive permutation tests when N! is small, and the memory estimates of the engines."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from vbmkit.errors import ConfigError
from vbmkit.stats.design import Contrast
from vbmkit.stats.glm import block_bytes_per_voxel, prepare_weighted
from vbmkit.stats.memory import glm_memory, subsample_parts
from vbmkit.stats.permutation import (
    all_permutations,
    effective_permutations,
    freedman_lane,
    permutation_batch,
)
from vbmkit.stats.subsample import draw_subsamples


def test_all_permutations_identity_first_and_distinct():
    perms = all_permutations(4)
    assert perms.shape == (24, 4) and perms.dtype == torch.int64
    assert perms[0].tolist() == [0, 1, 2, 3]
    assert len({tuple(p) for p in perms.tolist()}) == 24
    assert all(sorted(p) == [0, 1, 2, 3] for p in perms.tolist())


def test_all_permutations_refuses_too_many_subjects():
    with pytest.raises(ConfigError, match="n_subjects: expected at most 20 for an exhaustive permutation test; got 21"):
        all_permutations(21)


@pytest.mark.parametrize(("n", "asked", "expected"), [
    (8, 10_000_000, (40320, True)), (8, 40320, (40320, True)), (8, 40319, (40319, False)),
    (30, 10**9, (10**9, False)), (3, 2, (2, False)),
])
def test_effective_permutations(n, asked, expected):
    assert effective_permutations(n, asked) == expected


def _problem(n: int, v: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n)
    X = np.column_stack([np.ones(n), age, rng.normal(size=n)])
    Y = 0.5 + 0.01 * age[:, None] + 0.2 * rng.normal(size=(n, v))
    return torch.from_numpy(Y.astype(np.float32)), X, Contrast("age", np.array([0, 1, 0.0]))


def _brute_force_max(Y: torch.Tensor, X: np.ndarray, contrast: Contrast) -> tuple[np.ndarray, np.ndarray]:
    """Observed t per voxel and the max t of every distinct permutation, by textbook Freedman-Lane
    in float64: permute the reduced model's residuals, add its fit back, refit by least squares."""
    y = Y.double().numpy()
    c = np.atleast_2d(contrast.matrix)[0]
    z = X @ scipy.linalg.null_space(c[None])
    fitted = z @ np.linalg.lstsq(z, y, rcond=None)[0]
    xtx_inv = np.linalg.inv(X.T @ X)
    df = X.shape[0] - X.shape[1]

    def t_map(data: np.ndarray) -> np.ndarray:
        beta = xtx_inv @ X.T @ data
        resid = data - X @ beta
        return (c @ beta) / np.sqrt((resid**2).sum(0) / df * (c @ xtx_inv @ c))

    maxima = [t_map((y - fitted)[list(p)] + fitted).max() for p in itertools.permutations(range(X.shape[0]))]
    return t_map(y), np.array(maxima)


def test_exhaustive_test_equals_brute_force_distribution():
    Y, X, contrast = _problem(n=6, v=11)
    with pytest.warns(UserWarning, match=r"--permutations 5000: only 720 distinct permutations of 6 subjects; "
                                         r"using all of them \(exact test\)"):
        res = freedman_lane(Y, X, [contrast], n_permutations=5000)["age"]
    observed, maxima = _brute_force_max(Y, X, contrast)
    assert res.max_null.shape == (720,)
    # float32 engine vs float64 reference: the same values to ~1e-5 relative
    np.testing.assert_allclose(np.sort(res.max_null.numpy()), np.sort(maxima), rtol=1e-4, atol=1e-4)
    expected_p = (maxima[None, :] >= observed[:, None] - 1e-9).mean(1)
    # exact p: counts of 720 maxima; continuous data leave no ties within float32 rounding
    np.testing.assert_array_equal(res.p_fwe.numpy(), expected_p)
    assert res.p_fwe.min() >= 1 / 720


def test_asking_for_exactly_n_factorial_enumerates_without_a_warning():
    Y, X, contrast = _problem(n=5, v=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = freedman_lane(Y, X, [contrast], n_permutations=120)["age"]
    assert res.max_null.shape == (120,)
    assert res.max_null[0] == pytest.approx(float(res.stat.max()))  # identity first


def test_permutation_batch_grows_only_for_few_voxels():
    assert permutation_batch(40320, 2, 504) == 4161  # 2^22 / (2 x 504)
    assert permutation_batch(40320, 2, 200_000) == 256  # whole brain: blocks of 8192 voxels
    assert permutation_batch(50, 2, 504) == 50
    assert permutation_batch(10_000, 6, 1_000_000) == 128


def test_memory_estimate_of_a_voxel_block_matches_the_engine():
    n, k = 12, 10
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    contrasts = [Contrast("a", np.array([0, 1, 0.0])), Contrast("ab", np.array([[0, 1, 0], [0, 0, 1.0]]), "F")]
    weights = draw_subsamples(n, k=k, fraction=0.8)
    design = prepare_weighted(X, weights.double(), contrasts, device=torch.device("cpu"))
    engine_fixed = int(design.g.numel() + weights.numel()) * 4
    engine_per_voxel = block_bytes_per_voxel(design, n) + 16 * k * len(design.heads)
    _, fixed, per_voxel, outputs = subsample_parts(n, 3, [1, 2], k, 100)
    assert per_voxel == engine_per_voxel
    assert engine_fixed <= fixed <= 1.2 * engine_fixed  # plus the per-contrast (K, Q, P) rows
    assert outputs == 2 * 12 * 100 * 2


def test_memory_estimate_scales_with_the_counts_and_caps_at_n_factorial():
    small = glm_memory(12, 3, [1], subsamples=100, permutations=0, n_voxels=1000)
    large = glm_memory(12, 3, [1], subsamples=1_000_000_000, permutations=0, n_voxels=1000)
    assert large.subsample_host == pytest.approx(1e7 * small.subsample_host, rel=1e-6)
    assert large.subsample_host > 1e12  # far beyond any machine: refused before drawing
    exact = glm_memory(8, 2, [1], subsamples=0, permutations=10_000_000, n_voxels=504)
    assert exact.n_permutations == 40320 and exact.permutation_host < 100e6
    assert glm_memory(8, 2, [1], subsamples=0, permutations=0, n_voxels=504).permutation_host == 0
