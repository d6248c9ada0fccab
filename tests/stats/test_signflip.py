"""Sign flipping and exchangeability blocks (vbmkit.stats.exchange, map_permutation)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage
import torch

from vbmkit.errors import ConfigError
from vbmkit.stats.design import Contrast
from vbmkit.stats.exchange import check_blocks, draw_transforms
from vbmkit.stats.map_permutation import fwe_p, permutation_inference

SHAPE = (7, 8, 9)


def _one_sample(n: int, seed: int = 0, shift: float = 0.3):
    rng = np.random.default_rng(seed)
    maps = np.stack([scipy.ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.0) for _ in range(n)]) + shift * 0.3
    mask = np.ones(SHAPE, bool)
    mask[:, :, 0] = False
    return torch.from_numpy(maps[:, mask].astype(np.float32)), mask


def _t_one_sample(y: np.ndarray) -> np.ndarray:
    n = y.shape[0]
    return y.mean(0) / (y.std(0, ddof=1) / np.sqrt(n))


def test_exact_enumeration_matches_brute_force():
    n = 6
    Y, mask = _one_sample(n)
    with pytest.warns(UserWarning, match="only 64 distinct sign flips of 6 units"):
        res = permutation_inference(Y, np.ones((n, 1)), [Contrast("mean", np.array([1.0]))], mask=mask,
                                    n_permutations=100, cluster_p=0.05)["mean"]
    assert res.scheme == "flip" and res.n_permutations == 64
    y = Y.double().numpy()
    maxima = []
    for bits in itertools.product([1.0, -1.0], repeat=n):
        maxima.append(_t_one_sample(y * np.array(bits)[:, None]).max())
    maxima = np.array(maxima)
    # float32 data and GEMMs vs a float64 textbook t: 1e-4 relative
    np.testing.assert_allclose(np.sort(res.max_null_voxel.numpy()), np.sort(maxima), rtol=1e-4)
    t = _t_one_sample(y)
    np.testing.assert_allclose(res.stat[mask].numpy(), t, rtol=1e-4, atol=1e-4)
    expected = fwe_p(t, maxima)
    got = res.p_fwe_voxel[mask].numpy()
    away = np.abs(t[:, None] - maxima[None]).min(1) > 1e-3  # ties within float32 rounding excluded
    np.testing.assert_allclose(got[away], expected[away])
    assert res.max_null_voxel[0].item() == pytest.approx(t.max(), rel=1e-4)  # identity first


def test_auto_uses_flips_for_a_paired_difference_and_permutations_otherwise():
    n = 10
    Y, mask = _one_sample(n, seed=1)
    X = np.column_stack([np.ones(n), np.random.default_rng(0).normal(size=n)])
    out = permutation_inference(Y, X, [Contrast("mean", np.array([1.0, 0])), Contrast("slope", np.array([0, 1.0]))],
                                mask=mask, n_permutations=8, tfce=None, cluster_p=None)
    assert out["mean"].scheme == "flip" and out["slope"].scheme == "permute"


def test_draws_identity_first_and_distinct_when_exhaustive():
    perms, signs, exhaustive = draw_transforms(5, 32, scheme="flip")
    assert exhaustive and signs.shape == (32, 5)
    assert torch.equal(signs[0], torch.ones(5)) and torch.equal(perms, torch.arange(5).expand(32, 5))
    assert len({tuple(r) for r in signs.tolist()}) == 32
    perms, signs, exhaustive = draw_transforms(30, 50, scheme="flip", seed=3)
    assert not exhaustive and torch.equal(signs[0], torch.ones(30)) and set(signs.unique().tolist()) == {-1.0, 1.0}
    again = draw_transforms(30, 50, scheme="flip", seed=3)[1]
    assert torch.equal(signs, again)  # the seed fixes the draws


def test_permutations_stay_within_blocks():
    blocks = check_blocks(np.array(["a", "b", "a", "c", "b", "a", "c", "b"]), 8)
    perms, signs, _ = draw_transforms(8, 40, blocks=blocks, seed=1)
    assert torch.equal(perms[0], torch.arange(8)) and bool((signs == 1).all())
    assert bool((torch.from_numpy(blocks)[perms] == torch.from_numpy(blocks)[None]).all())
    assert len({tuple(p) for p in perms.tolist()}) > 10


def test_whole_blocks_flip_together():
    blocks = check_blocks(np.repeat(np.arange(5), 2), 10)  # five pairs
    _, signs, exhaustive = draw_transforms(10, 32, scheme="flip", blocks=blocks)
    assert exhaustive and signs.shape[0] == 32
    assert bool((signs[:, 0::2] == signs[:, 1::2]).all())


def test_blocked_flip_inference_equals_pairwise_brute_force():
    n = 8
    Y, mask = _one_sample(n, seed=2)
    blocks = np.repeat(np.arange(4), 2)
    res = permutation_inference(Y, np.ones((n, 1)), [Contrast("m", np.array([1.0]))], mask=mask,
                                n_permutations=16, blocks=blocks, tfce=None, cluster_p=None)["m"]
    y = Y.double().numpy()
    maxima = [_t_one_sample(y * np.repeat(bits, 2)[:, None]).max() for bits in itertools.product([1.0, -1.0], repeat=4)]
    np.testing.assert_allclose(np.sort(res.max_null_voxel.numpy()), np.sort(maxima), rtol=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    ({"scheme": "rotate"}, "scheme: expected one of permute, flip; got 'rotate'"),
    ({"n_permutations": 1}, r"n_permutations: expected at least 2 \(identity included\); got 1"),
    ({"blocks": np.arange(6)}, "blocks: every block has one subject"),
])
def test_draw_errors(kwargs, match):
    args = {"n_permutations": 10, **kwargs}
    with pytest.raises(ConfigError, match=match):
        draw_transforms(6, **args)


def test_block_shape_error():
    with pytest.raises(ConfigError, match=r"blocks: expected one block label per subject, shape \(6,\); got shape \(2, 3\)"):
        check_blocks(np.zeros((2, 3)), 6)
