"""Connected clusters of supra-threshold voxels (``scipy.ndimage.label``) and their peaks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage

from vbmkit.errors import ConfigError

_RANK = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class Cluster:
    """One cluster of voxels above the threshold.

    Attributes
    ----------
    index : int
        1 for the largest cluster, 2 for the next, ... (the value in :func:`cluster_labels`).
    size_voxels : int
    size_ml : float
        Volume in mL (cm^3): voxels x |det(affine[:3, :3])| / 1000.
    peak_value : float
        Largest statistic in the cluster.
    peak_ijk : tuple of int
        Voxel indices of the peak.
    peak_mm : tuple of float
        World (e.g. MNI) coordinates of the peak in mm, ``affine @ (i, j, k, 1)``.
    """

    index: int
    size_voxels: int
    size_ml: float
    peak_value: float
    peak_ijk: tuple[int, int, int]
    peak_mm: tuple[float, float, float]


def _check(stat: np.ndarray, affine: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    stat = np.asarray(stat, dtype=np.float64)
    affine = np.asarray(affine, dtype=np.float64)
    if stat.ndim != 3:
        raise ConfigError(f"stat: expected a 3-D map (X, Y, Z); got shape {stat.shape}")
    if affine.shape != (4, 4):
        raise ConfigError(f"affine: expected a 4 x 4 matrix; got shape {affine.shape}")
    if connectivity not in _RANK:
        raise ConfigError(f"connectivity: expected 6, 18 or 26; got {connectivity!r}")
    return stat, affine


def cluster_labels(stat: np.ndarray, threshold: float, *, connectivity: int = 26, min_voxels: int = 1
                   ) -> tuple[np.ndarray, int]:
    """Label the clusters of ``stat > threshold``, largest first.

    Parameters
    ----------
    stat : numpy.ndarray, shape (X, Y, Z)
        Statistic map; NaN never passes the threshold. For the negative tail pass ``-stat``.
    threshold : float
        Voxels strictly above it form clusters.
    connectivity : {6, 18, 26}
        Face, face+edge or face+edge+corner neighbours.
    min_voxels : int
        Clusters smaller than this are dropped (label 0).

    Returns
    -------
    labels : numpy.ndarray, shape (X, Y, Z), int32
        0 outside clusters, 1 for the largest cluster, 2 for the next, ...
    n_clusters : int
    """
    stat, _ = _check(stat, np.eye(4), connectivity)
    labels, _, order = _label(stat, threshold, connectivity, min_voxels)
    return labels, len(order)


def _label(stat: np.ndarray, threshold: float, connectivity: int, min_voxels: int):
    above = np.nan_to_num(stat, nan=-np.inf) > threshold
    structure = scipy.ndimage.generate_binary_structure(3, _RANK[connectivity])
    raw, n = scipy.ndimage.label(above, structure=structure)
    if n == 0:
        return np.zeros(stat.shape, np.int32), raw, []
    sizes = np.bincount(raw.ravel(), minlength=n + 1)[1:]
    peaks = scipy.ndimage.maximum(stat, raw, index=np.arange(1, n + 1))
    keep = [i for i in range(n) if sizes[i] >= min_voxels]
    order = sorted(keep, key=lambda i: (-sizes[i], -peaks[i]))  # larger first, then higher peak
    relabel = np.zeros(n + 1, np.int32)
    for new, old in enumerate(order, start=1):
        relabel[old + 1] = new
    return relabel[raw], raw, order


def find_clusters(stat: np.ndarray, threshold: float, *, affine: np.ndarray, min_voxels: int = 1,
                  connectivity: int = 26) -> list[Cluster]:
    """Clusters of ``stat > threshold`` with size, volume and peak, largest first.

    Parameters
    ----------
    stat : numpy.ndarray, shape (X, Y, Z)
        Statistic map (NaN outside the mask is fine). For the negative tail pass ``-stat``.
    threshold : float
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world matrix of the map (mm).
    min_voxels : int
        Smallest cluster reported (extent threshold).
    connectivity : {6, 18, 26}

    Returns
    -------
    list of Cluster
        Sorted by size (descending), then peak value; ``index`` matches
        :func:`cluster_labels`.
    """
    stat, affine = _check(stat, affine, connectivity)
    labels, _, order = _label(stat, threshold, connectivity, min_voxels)
    if not order:
        return []
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    index = np.arange(1, len(order) + 1)
    sizes = np.bincount(labels.ravel(), minlength=len(order) + 1)[1:]
    positions = scipy.ndimage.maximum_position(stat, labels, index=index)
    clusters = []
    for i, ijk in zip(index, positions, strict=True):
        mm = affine @ np.array([*ijk, 1.0])
        clusters.append(Cluster(
            index=int(i), size_voxels=int(sizes[i - 1]), size_ml=float(sizes[i - 1] * voxel_ml),
            peak_value=float(stat[ijk]), peak_ijk=tuple(int(a) for a in ijk),
            peak_mm=tuple(float(a) for a in mm[:3]),
        ))
    return clusters


def cluster_statistics(stat: np.ndarray, threshold: float, *, connectivity: int = 26
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extent and mass of every cluster of ``stat > threshold`` (one map).

    Parameters
    ----------
    stat : numpy.ndarray, shape (X, Y, Z)
        Statistic map (0 or NaN outside the mask). For the negative tail pass ``-stat``.
    threshold : float
        Cluster-forming threshold (e.g. the t of p = 0.001).
    connectivity : {6, 18, 26}
        Default 26 (faces, edges and corners), as FSL randomise ``-c``/``-C`` and SPM.

    Returns
    -------
    labels : numpy.ndarray, shape (X, Y, Z), int32
        ``scipy.ndimage.label`` order (1..n, 0 outside clusters).
    extent : numpy.ndarray, shape (n,), int64
        Voxels per cluster.
    mass : numpy.ndarray, shape (n,), float64
        Sum of ``stat - threshold`` over the cluster (FSL randomise's cluster mass, ``-C``),
        in units of the statistic x voxels.
    """
    stat, _ = _check(stat, np.eye(4), connectivity)
    above = np.nan_to_num(stat, nan=-np.inf) > threshold
    structure = scipy.ndimage.generate_binary_structure(3, _RANK[connectivity])
    labels, n = scipy.ndimage.label(above, structure=structure)
    flat = labels.ravel()
    inside = flat > 0
    extent = np.bincount(flat[inside], minlength=n + 1)[1:]
    mass = np.bincount(flat[inside], weights=stat.ravel()[inside] - threshold, minlength=n + 1)[1:]
    return labels.astype(np.int32), extent.astype(np.int64), mass
