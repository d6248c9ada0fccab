"""Cluster sub-peaks (three per cluster, > 8 mm apart) and equivalent Z on tiny phantoms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import scipy.stats

from vbmkit.errors import ConfigError
from vbmkit.stats.peaks import cluster_peaks, equivalent_z, tail_p

SHAPE = (9, 8, 7)


def _blobs(shape, centres, heights, sigma_vox):
    """Sum of isotropic Gaussians (in voxels) on a grid."""
    grid = np.indices(shape).astype(np.float64)
    out = np.zeros(shape)
    for c, h in zip(centres, heights, strict=True):
        d2 = sum((grid[a] - c[a]) ** 2 for a in range(3))
        out += h * np.exp(-d2 / (2 * sigma_vox ** 2))
    return out


def _brute_peaks(stat, labels, affine, max_peaks=3, min_mm=8.0):
    """Independent reference: explicit loops over the 26 neighbours, then the greedy distance rule."""
    out = []
    values = sorted((int(v) for v in np.unique(labels) if v != 0), key=lambda v: (abs(v), v < 0))
    for v in values:
        s = np.sign(v)
        cands = []
        for ijk in zip(*np.nonzero(labels == v), strict=True):
            h = s * stat[ijk]
            ok = True
            for d in itertools.product((-1, 0, 1), repeat=3):
                n = tuple(a + b for a, b in zip(ijk, d, strict=True))
                if any(x < 0 or x >= m for x, m in zip(n, stat.shape, strict=True)) or labels[n] != v:
                    continue
                if s * stat[n] > h:
                    ok = False
            if ok:
                cands.append((-h, tuple(int(a) for a in ijk)))
        taken = []
        for _, ijk in sorted(cands):
            mm = (affine @ [*ijk, 1.0])[:3]
            if all(np.linalg.norm(mm - t) >= min_mm for t, _ in taken):
                taken.append((mm, ijk))
            if len(taken) == max_peaks:
                break
        out += [(v, ijk) for _, ijk in taken]
    return out


@pytest.mark.parametrize(("distance_mm", "n_expected"), [(10.0, 2), (6.0, 1)])
def test_two_blobs_in_one_cluster(distance_mm, n_expected):
    # 2 mm voxels, blobs of sigma 2 mm: two separate maxima both at 10 mm and at 6 mm (> 2 sigma apart),
    # one connected cluster above 0.05; the 8 mm rule keeps the second only at 10 mm
    step = int(distance_mm / 2)
    shape = (7 + step + 4, 9, 8)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    a, b = (3, 4, 4), (3 + step, 4, 4)
    stat = _blobs(shape, [a, b], [5.0, 4.0], sigma_vox=1.0)
    labels, n = scipy.ndimage.label(stat > 0.05, structure=np.ones((3, 3, 3)))
    assert n == 1  # one cluster holding both blobs
    assert len(cluster_peaks(stat, labels, affine=affine, min_distance_mm=0.0)) == 2  # two local maxima either way
    peaks = cluster_peaks(stat, labels, affine=affine)
    assert len(peaks) == n_expected
    assert peaks[0].ijk == a and peaks[0].rank == 1 and peaks[0].value == stat[a]
    if n_expected == 2:
        assert peaks[1].ijk == b and peaks[1].rank == 2
        assert np.linalg.norm(np.subtract(peaks[1].mm, peaks[0].mm)) == pytest.approx(distance_mm)


def test_at_most_three_peaks_and_negative_clusters():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    shape = (30, 9, 8)
    centres = [(3, 4, 4), (9, 4, 4), (15, 4, 4), (21, 4, 4)]
    stat = _blobs(shape, centres, [5.0, 4.5, 4.0, 3.5], sigma_vox=1.0)
    labels = np.where(stat > 0.05, 1, 0)
    neg = -_blobs((30, 9, 8), [(5, 4, 4)], [3.0], sigma_vox=1.0)
    stat2 = np.concatenate([stat, neg], axis=2)
    labels2 = np.concatenate([labels, np.where(neg < -0.05, -1, 0)], axis=2)
    peaks = cluster_peaks(stat2, labels2, affine=affine)
    assert [(p.cluster, p.rank, p.ijk) for p in peaks] == [
        (1, 1, (3, 4, 4)), (1, 2, (9, 4, 4)), (1, 3, (15, 4, 4)), (-1, 1, (5, 4, 12))]
    assert peaks[-1].value == pytest.approx(-3.0)  # the minimum of the negative cluster


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_flipped_anisotropic_grid(seed):
    rng = np.random.default_rng(seed)
    stat = scipy.ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.0) * 6
    thr = 0.4
    pos, _ = scipy.ndimage.label(stat > thr, structure=np.ones((3, 3, 3)))
    neg, _ = scipy.ndimage.label(stat < -thr, structure=np.ones((3, 3, 3)))
    labels = pos - neg
    # flipped x, anisotropic voxels (3 x 1.5 x 2.5 mm), so mm distances differ from voxel ones
    affine = np.array([[-3.0, 0, 0, 10], [0, 1.5, 0, -4], [0, 0, 2.5, 7], [0, 0, 0, 1]])
    got = cluster_peaks(stat, labels, affine=affine, min_distance_mm=4.0)
    want = _brute_peaks(stat, labels, affine, min_mm=4.0)
    assert [(p.cluster, p.ijk) for p in got] == want
    for p in got:
        np.testing.assert_allclose(p.mm, (affine @ [*p.ijk, 1.0])[:3])


def test_empty_labels_give_no_peaks():
    assert cluster_peaks(np.zeros(SHAPE), np.zeros(SHAPE, int), affine=np.eye(4)) == []


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match="stat: expected a 3-D map"):
        cluster_peaks(np.zeros((3, 3)), np.zeros((3, 3), int), affine=np.eye(4))
    with pytest.raises(ConfigError, match="labels: expected an integer image"):
        cluster_peaks(np.zeros(SHAPE), np.zeros(SHAPE), affine=np.eye(4))
    with pytest.raises(ConfigError, match="affine: expected a 4 x 4"):
        cluster_peaks(np.zeros(SHAPE), np.zeros(SHAPE, int), affine=np.eye(3))
    with pytest.raises(ConfigError, match="connectivity: expected 6, 18 or 26"):
        cluster_peaks(np.zeros(SHAPE), np.zeros(SHAPE, int), affine=np.eye(4), connectivity=4)
    with pytest.raises(ConfigError, match="max_peaks: expected"):
        cluster_peaks(np.zeros(SHAPE), np.zeros(SHAPE, int), affine=np.eye(4), max_peaks=0)
    with pytest.raises(ConfigError, match="min_distance_mm: expected"):
        cluster_peaks(np.zeros(SHAPE), np.zeros(SHAPE, int), affine=np.eye(4), min_distance_mm=-1.0)
    with pytest.raises(ConfigError, match="kind: expected 't' or 'F'"):
        equivalent_z([1.0], kind="z", df=(1, 10))
    with pytest.raises(ConfigError, match="df: expected two positive"):
        equivalent_z([1.0], kind="t", df=(1, 0))
    with pytest.raises(ConfigError, match="tail: expected"):
        tail_p([1.0], kind="t", df=(1, 10), tail="up")


def test_equivalent_z_matches_the_normal_quantile_of_p():
    t = np.array([-3.0, -0.5, 0.0, 1.0, 2.5, 6.0])
    # reference through p directly (no underflow in this range); 1e-9: float64 quantile round trip
    np.testing.assert_allclose(equivalent_z(t, kind="t", df=(1, 20)),
                               scipy.stats.norm.isf(scipy.stats.t.sf(t, 20)), rtol=1e-9, atol=1e-12)
    f = np.array([0.5, 3.0, 12.0])
    np.testing.assert_allclose(equivalent_z(f, kind="F", df=(2, 30)),
                               scipy.stats.norm.isf(scipy.stats.f.sf(f, 2, 30)), rtol=1e-9)
    # huge df: t is already normal (1e-4: the t distribution at 1e7 df)
    np.testing.assert_allclose(equivalent_z([3.0], kind="t", df=(1, 1e7)), [3.0], rtol=1e-4)


def test_equivalent_z_stays_finite_and_ordered_where_p_underflows():
    t = np.array([40.0, 1e6, 1e10, 1e12, 1e100])
    assert scipy.stats.t.sf(1e12, 30) == 0  # beyond float64: scipy's p is 0
    z = equivalent_z(t, kind="t", df=(1, 30))
    assert np.isfinite(z).all() and (np.diff(z) > 0).all()
    # the asymptotic tail meets scipy's exact one where both exist (1e-6: O(x) term at t = 1e10)
    exact = -scipy.special.ndtri_exp(scipy.stats.t.logsf(1e10, 30))
    from vbmkit.stats.peaks import _log_upper_tail

    np.testing.assert_allclose(-scipy.special.ndtri_exp(_log_upper_tail(np.array([1e10]), "t", 1, 30)), exact,
                               rtol=1e-6)
    np.testing.assert_allclose(-scipy.special.ndtri_exp(_log_upper_tail(np.array([1e8]), "F", 2, 30)),
                               -scipy.special.ndtri_exp(scipy.stats.f.logsf(1e8, 2, 30)), rtol=1e-6)


def test_tail_p():
    t = np.array([-2.0, 0.0, 2.0])
    np.testing.assert_allclose(tail_p(t, kind="t", df=(1, 10)), scipy.stats.t.sf(t, 10))
    np.testing.assert_allclose(tail_p(t, kind="t", df=(1, 10), tail="negative"), scipy.stats.t.cdf(t, 10))
    np.testing.assert_allclose(tail_p(t, kind="t", df=(1, 10), tail="both"),
                               [2 * scipy.stats.t.sf(2.0, 10), 1.0, 2 * scipy.stats.t.sf(2.0, 10)])
    np.testing.assert_allclose(tail_p([3.0], kind="F", df=(2, 10), tail="both"), scipy.stats.f.sf(3.0, 2, 10))
