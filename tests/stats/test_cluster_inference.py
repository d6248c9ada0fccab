"""Whole-map permutation inference: clusters, TFCE and maxT FWE (vbmkit.stats.map_permutation)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from tests.conftest import DEVICES
from tests.stats.tfce_reference import brute_tfce
from vbmkit.errors import ConfigError, DesignError
from vbmkit.stats.clusters import cluster_statistics
from vbmkit.stats.design import Contrast
from vbmkit.stats.map_permutation import TfceSettings, fwe_p, permutation_inference
from vbmkit.stats.permutation import freedman_lane

SHAPE = (7, 8, 9)


def _problem(n: int = 16, seed: int = 0, effect: float = 0.0):
    rng = np.random.default_rng(seed)
    mask = np.ones(SHAPE, bool)
    mask[0] = False
    mask[:, 0, :3] = False
    group = np.repeat([0.0, 1.0], n // 2)
    maps = np.stack([scipy.ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.0) for _ in range(n)])
    maps[:, 2:5, 3:6, 3:6] += effect * group[:, None, None, None]
    X = np.column_stack([np.ones(n), group, rng.normal(size=n)])
    Y = torch.from_numpy(maps[:, mask].astype(np.float32))
    contrasts = [Contrast("group", np.array([0, 1, 0.0])), Contrast("cov", np.array([0, 0, 1.0])),
                 Contrast("F", np.array([[0, 1, 0], [0, 0, 1.0]]), "F")]
    return Y, X, contrasts, mask


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_cluster_statistics_match_scipy_label(connectivity):
    rng = np.random.default_rng(connectivity)
    stat = scipy.ndimage.gaussian_filter(rng.normal(size=SHAPE), 0.8) * 4
    labels, extent, mass = cluster_statistics(stat, 0.5, connectivity=connectivity)
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    ref, n = scipy.ndimage.label(stat > 0.5, scipy.ndimage.generate_binary_structure(3, rank))
    assert n > 1 and np.array_equal(labels, ref)
    for i in range(1, n + 1):
        assert extent[i - 1] == (ref == i).sum()
        assert mass[i - 1] == pytest.approx((stat[ref == i] - 0.5).sum(), rel=1e-12)


def test_voxel_null_matches_freedman_lane_and_identity_first():
    Y, X, contrasts, mask = _problem()
    out = permutation_inference(Y, X, contrasts, mask=mask, n_permutations=30, seed=7, memory_bytes=200_000)
    ref = freedman_lane(Y, X, contrasts, n_permutations=30, seed=7)
    for c in contrasts:
        res = out[c.name]
        assert res.n_permutations == 30 and res.scheme == "permute"
        torch.testing.assert_close(res.stat[mask], ref[c.name].stat, rtol=1e-5, atol=1e-5)
        # float32 GEMMs of different widths: 1e-5 relative
        np.testing.assert_allclose(res.max_null_voxel.numpy(), ref[c.name].max_null.numpy(), rtol=1e-5)
        np.testing.assert_allclose(res.p_fwe_voxel[mask].numpy(), ref[c.name].p_fwe.numpy())
        assert torch.isnan(res.p_fwe_voxel[torch.from_numpy(~mask)]).all()
        # the identity's maxima are the observed ones
        assert res.max_null_tfce[0].item() == pytest.approx(res.tfce.max().item(), rel=1e-12)
        ext = max((cl.extent for cl in res.clusters), default=0)
        assert res.max_null_extent[0].item() == ext


def test_observed_tfce_and_clusters_are_those_of_the_stat_map():
    Y, X, contrasts, mask = _problem(effect=1.0)
    res = permutation_inference(Y, X, contrasts[:1], mask=mask, n_permutations=20,
                                tfce=TfceSettings(connectivity=26), cluster_p=0.01)["group"]
    stat = res.stat.double().numpy()
    np.testing.assert_allclose(res.tfce.numpy(), brute_tfce(stat, connectivity=26), rtol=1e-6, atol=1e-9)
    labels, extent, mass = cluster_statistics(stat, res.cluster_threshold, connectivity=26)
    assert sorted(c.extent for c in res.clusters) == sorted(extent.tolist())
    for c in res.clusters:
        assert (res.cluster_labels.numpy() == c.index).sum() == c.extent
        assert c.mass == pytest.approx(float(stat[res.cluster_labels.numpy() == c.index].sum()
                                              - c.extent * res.cluster_threshold), rel=1e-5)


def test_planted_effect_is_found_by_tfce_and_clusters():
    Y, X, contrasts, mask = _problem(n=20, effect=1.5, seed=2)
    res = permutation_inference(Y, X, contrasts[:1], mask=mask, n_permutations=100, cluster_p=0.01)["group"]
    assert res.p_fwe_tfce[3, 4, 4].item() <= 0.05
    assert res.clusters[0].p_fwe_extent <= 0.05 and res.clusters[0].p_fwe_mass <= 0.05
    assert res.cluster_labels[3, 4, 4].item() == res.clusters[0].index == 1


def test_fwe_p_is_monotone_in_the_statistic():
    Y, X, contrasts, mask = _problem(effect=0.7, seed=3)
    res = permutation_inference(Y, X, contrasts[:1], mask=mask, n_permutations=40, cluster_p=None)["group"]
    assert res.clusters == () and res.cluster_labels is None
    for values, p in ((res.tfce[mask], res.p_fwe_tfce[mask]), (res.stat[mask], res.p_fwe_voxel[mask])):
        order = torch.argsort(values.double())
        assert bool((p[order].diff() <= 0).all())
        assert p.min().item() >= 1 / 40


def test_fwe_p_counts_the_identity():
    np.testing.assert_allclose(fwe_p(np.array([3.0, 0.5, 9.0]), np.array([3.0, 1.0, 2.0, 0.0])),
                               [0.25, 0.75, 0.0])


def test_tails_negative_mirrors_positive_and_both_is_the_max():
    Y, X, contrasts, mask = _problem(effect=1.0, seed=4)
    kw = {"mask": mask, "n_permutations": 25, "seed": 1, "cluster_p": 0.05}
    pos = permutation_inference(-Y, X, contrasts[:1], tail="positive", **kw)["group"]
    neg = permutation_inference(Y, X, contrasts[:1], tail="negative", **kw)["group"]
    both = permutation_inference(Y, X, contrasts[:1], tail="both", **kw)["group"]
    torch.testing.assert_close(neg.stat, -pos.stat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(neg.tfce, -pos.tfce, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(neg.max_null_tfce.numpy(), pos.max_null_tfce.numpy(), rtol=1e-4)
    assert all(c.index < 0 for c in neg.clusters)
    pos_y = permutation_inference(Y, X, contrasts[:1], tail="positive", **kw)["group"]
    np.testing.assert_allclose(both.max_null_tfce.numpy(),
                               np.maximum(pos_y.max_null_tfce.numpy(), neg.max_null_tfce.numpy()), rtol=1e-12)
    np.testing.assert_allclose(both.max_null_extent.numpy(),
                               np.maximum(pos_y.max_null_extent.numpy(), neg.max_null_extent.numpy()))
    np.testing.assert_allclose(both.max_null_voxel.numpy(), both.max_null_voxel.numpy())
    np.testing.assert_allclose(both.tfce.numpy(), pos_y.tfce.numpy() + neg.tfce.numpy(), rtol=1e-12, atol=1e-12)
    assert {np.sign(c.index) for c in both.clusters} <= {-1, 1}


def test_f_contrast_is_positive_only():
    Y, X, contrasts, mask = _problem(effect=1.0, seed=5)
    res = permutation_inference(Y, X, contrasts[2:], mask=mask, n_permutations=10, tail="both")["F"]
    assert res.tail == "positive" and res.kind == "F"
    assert bool((res.tfce >= 0).all()) and bool((res.stat >= 0).all())


def test_null_sanity_family_wise_rate():
    """40 null datasets x 20 permutations: rejections at FWE 0.05 stay rare.

    At a true rate of 0.05, more than 8 rejections of 40 has binomial probability ~1e-4, so
    this flags a broken null without flaking; benchmarks/inference_null.py measures the rate.
    """
    rejections = np.zeros(3)
    for seed in range(40):
        Y, X, contrasts, mask = _problem(n=12, seed=100 + seed)
        res = permutation_inference(Y, X, contrasts[:1], mask=mask, n_permutations=20, seed=seed,
                                    cluster_p=0.01)["group"]
        rejections += [res.p_fwe_voxel[mask].min() <= 0.05, res.p_fwe_tfce[mask].min() <= 0.05,
                       min((c.p_fwe_extent for c in res.clusters), default=1.0) <= 0.05]
    assert (rejections <= 8).all(), rejections


@pytest.mark.parametrize("kwargs,error,match", [
    ({"tail": "up"}, ConfigError, "tail: expected one of positive, negative, both; got 'up'"),
    ({"scheme": "swap"}, ConfigError, "scheme: expected auto, permute or flip; got 'swap'"),
    ({"cluster_p": 1.5}, ConfigError, r"cluster_p: expected a probability in \(0, 1\) or None; got 1.5"),
    ({"mask": np.ones(SHAPE, bool)}, ConfigError, "mask: expected a 3-D bool array with 414 True voxels \\(one per column of Y\\); got dtype bool, shape \\(7, 8, 9\\), 504 True"),
    ({"blocks": np.zeros(3)}, ConfigError, r"blocks: expected one block label per subject, shape \(16,\)"),
    ({"n_permutations": 1}, ConfigError, "n_permutations: expected at least 2"),
])
def test_errors(kwargs, error, match):
    Y, X, contrasts, mask = _problem()
    args = {"mask": mask, "n_permutations": 5, **kwargs}
    with pytest.raises(error, match=match):
        permutation_inference(Y, X, contrasts[:1], **args)


def test_mean_contrast_cannot_be_permuted():
    Y, X, _, mask = _problem()
    with pytest.raises(DesignError, match="a sign-flipping test is needed"):
        permutation_inference(Y, X, [Contrast("mean", np.array([1, 0, 0.0]))], mask=mask, n_permutations=5,
                              scheme="permute")


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree(device):
    Y, X, contrasts, mask = _problem(effect=1.0)
    kw = {"mask": mask, "n_permutations": 12, "seed": 2}
    cpu = permutation_inference(Y, X, contrasts[:1], **kw)["group"]
    dev = permutation_inference(Y, X, contrasts[:1], device=device, **kw)["group"]
    np.testing.assert_allclose(dev.max_null_tfce.numpy(), cpu.max_null_tfce.numpy(), rtol=1e-4)
    np.testing.assert_allclose(dev.max_null_extent.numpy(), cpu.max_null_extent.numpy())


def test_block_size_does_not_change_results():
    Y, X, contrasts, mask = _problem(effect=0.8, seed=6)
    kw = {"mask": mask, "n_permutations": 9, "seed": 4, "cluster_p": 0.05}
    small = permutation_inference(Y, X, contrasts, memory_bytes=1, **kw)  # one permutation per block
    large = permutation_inference(Y, X, contrasts, **kw)
    for c in contrasts:
        for name in ("max_null_voxel", "max_null_tfce", "max_null_extent", "max_null_mass"):
            np.testing.assert_allclose(getattr(small[c.name], name).numpy(), getattr(large[c.name], name).numpy(),
                                       rtol=1e-5)


def test_memory_estimate_counts_the_parts():
    from vbmkit.stats.memory import map_permutation_parts

    host, fixed, per_perm, outputs = map_permutation_parts(500, 3, [1], 5000, 200_000, 113 * 137 * 113)
    assert fixed == 4 * 500 * 200_000 + 4 * 200_000
    assert per_perm == 4 * 3 * 500 + 4 * 3 * 200_000 + 24 * 200_000
    assert outputs == 32 * 113 * 137 * 113 and host > 16 * 5000 * 500
    assert map_permutation_parts(500, 3, [1], 0, 10, 10) == (0, 0, 0, 0)
