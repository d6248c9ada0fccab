"""Cluster tables on a hand-made phantom (vbmkit.stats.clusters)."""

from __future__ import annotations

import numpy as np
import pytest

from vbmkit.errors import ConfigError
from vbmkit.stats.clusters import cluster_labels, find_clusters

# flipped, anisotropic grid: x runs right-to-left with 2 mm voxels, y 1.5 mm, z 3 mm
AFFINE = np.array([[-2.0, 0, 0, 10], [0, 1.5, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]])


def _phantom() -> np.ndarray:
    stat = np.zeros((7, 8, 9))
    stat[1:3, 1:4, 1:3] = 3.0  # 12 voxels
    stat[2, 2, 1] = 5.0  # its peak
    stat[5, 6, 6] = 4.0  # 2 voxels touching only by a corner ...
    stat[6, 7, 7] = 4.5  # ... one cluster with 26-connectivity, two with 6
    stat[0, 7, 8] = np.nan  # outside the mask
    return stat


def test_sizes_peaks_and_coordinates():
    clusters = find_clusters(_phantom(), 2.0, affine=AFFINE)
    assert [c.size_voxels for c in clusters] == [12, 2]
    big = clusters[0]
    assert big.index == 1 and big.peak_value == 5.0 and big.peak_ijk == (2, 2, 1)
    assert big.peak_mm == (10 - 4.0, -20 + 3.0, 5 + 3.0)
    assert big.size_ml == pytest.approx(12 * 2 * 1.5 * 3 / 1000)
    assert clusters[1].peak_ijk == (6, 7, 7) and clusters[1].peak_value == 4.5


def test_connectivity_and_extent():
    six = find_clusters(_phantom(), 2.0, affine=AFFINE, connectivity=6)
    assert [c.size_voxels for c in six] == [12, 1, 1]
    assert [c.peak_value for c in six[1:]] == [4.5, 4.0]  # ties in size: higher peak first
    assert [c.size_voxels for c in find_clusters(_phantom(), 2.0, affine=AFFINE, min_voxels=3)] == [12]
    assert find_clusters(_phantom(), 10.0, affine=AFFINE) == []


def test_labels_follow_cluster_order():
    labels, n = cluster_labels(_phantom(), 2.0, connectivity=6)
    assert n == 3 and labels.shape == (7, 8, 9)
    assert (labels == 1).sum() == 12 and labels[6, 7, 7] == 2 and labels[5, 6, 6] == 3 and labels[0, 7, 8] == 0


def test_bad_arguments():
    with pytest.raises(ConfigError, match=r"stat: expected a 3-D map \(X, Y, Z\); got shape \(4, 4\)"):
        find_clusters(np.zeros((4, 4)), 1.0, affine=AFFINE)
    with pytest.raises(ConfigError, match="connectivity: expected 6, 18 or 26; got 8"):
        find_clusters(_phantom(), 1.0, affine=AFFINE, connectivity=8)
    with pytest.raises(ConfigError, match="affine: expected a 4 x 4 matrix"):
        find_clusters(_phantom(), 1.0, affine=np.eye(3))
