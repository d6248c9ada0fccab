"""Sub-peaks of clusters (SPM / nilearn ``get_clusters_table`` style) and equivalent Z values.

Pure numpy/scipy: a statistic map and a cluster label image in, voxel indices and mm out.
The table that lists them (``clusters.csv``) is assembled in :mod:`vbmkit.workflows.glm.outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import scipy.special
import scipy.stats

from vbmkit.errors import ConfigError

_RANK = {6: 1, 18: 2, 26: 3}
#: SPM's results table: three local maxima per cluster, more than 8 mm apart.
MAX_PEAKS = 3
MIN_DISTANCE_MM = 8.0


@dataclass(frozen=True)
class Peak:
    """One local maximum of a cluster.

    Attributes
    ----------
    cluster : int
        Label of its cluster in the label image (negative for a cluster of the negative tail).
    rank : int
        1 for the cluster's highest peak, 2 and 3 for its sub-peaks.
    value : float
        The statistic at the peak (signed: negative in a negative cluster).
    ijk : tuple of int
        Voxel indices.
    mm : tuple of float
        World coordinates ``affine @ (i, j, k, 1)`` in mm.
    """

    cluster: int
    rank: int
    value: float
    ijk: tuple[int, int, int]
    mm: tuple[float, float, float]


def _check(stat: np.ndarray, labels: np.ndarray, affine: np.ndarray, connectivity: int, max_peaks: int,
           min_distance_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stat = np.asarray(stat, dtype=np.float64)
    labels = np.asarray(labels)
    affine = np.asarray(affine, dtype=np.float64)
    if stat.ndim != 3:
        raise ConfigError(f"stat: expected a 3-D map (X, Y, Z); got shape {stat.shape}")
    if labels.shape != stat.shape or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"labels: expected an integer image of the shape of stat {stat.shape}; "
                          f"got {labels.dtype} of shape {labels.shape}")
    if affine.shape != (4, 4):
        raise ConfigError(f"affine: expected a 4 x 4 matrix; got shape {affine.shape}")
    if connectivity not in _RANK:
        raise ConfigError(f"connectivity: expected 6, 18 or 26; got {connectivity!r}")
    if max_peaks < 1:
        raise ConfigError(f"max_peaks: expected an integer >= 1; got {max_peaks!r}")
    if not np.isfinite(min_distance_mm) or min_distance_mm < 0:
        raise ConfigError(f"min_distance_mm: expected a finite distance >= 0 mm; got {min_distance_mm!r}")
    return stat, labels, affine


def cluster_peaks(stat: np.ndarray, labels: np.ndarray, *, affine: np.ndarray, max_peaks: int = MAX_PEAKS,
                  min_distance_mm: float = MIN_DISTANCE_MM, connectivity: int = 26) -> list[Peak]:
    """Up to ``max_peaks`` local maxima per cluster, each more than ``min_distance_mm`` from the others.

    Parameters
    ----------
    stat : numpy.ndarray, shape (X, Y, Z)
        Statistic map (t, F, ...). NaN voxels are never peaks.
    labels : numpy.ndarray, shape (X, Y, Z), integer
        Cluster labels, 0 outside clusters. A positive label marks a cluster of high values (its
        peaks are maxima of ``stat``), a negative label one of the negative tail (its peaks are
        minima of ``stat``), as ``MapInferenceResult.cluster_labels``.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-world matrix (mm); distances are measured in mm, so anisotropic and flipped
        grids are handled.
    max_peaks : int
        Peaks per cluster (SPM and nilearn: 3).
    min_distance_mm : float
        A candidate closer than this (Euclidean, mm) to a peak already listed is skipped
        (SPM and nilearn: 8 mm).
    connectivity : {6, 18, 26}
        Neighbourhood of the local-maximum test (default 26: the 3 x 3 x 3 cube).

    Returns
    -------
    list of Peak
        Grouped by cluster in the order of first appearance of ``sorted(set(labels) - {0}, key=abs)``
        with positive labels before negative ones of equal magnitude, highest peak first within a cluster.

    Notes
    -----
    A voxel is a local maximum when its height ``sign(label) x stat`` is at least that of every
    neighbour *of the same cluster*; the candidates are then taken greedily from the highest,
    skipping any within ``min_distance_mm`` of one already taken (SPM's ``spm_max`` +
    ``spm_list`` rule, nilearn's ``get_clusters_table(min_distance=8)``). The cluster maximum is
    always the first peak. Ties (plateaus) are broken by C order of the voxel index.
    """
    stat, labels, affine = _check(stat, labels, affine, connectivity, max_peaks, min_distance_mm)
    footprint = scipy.ndimage.generate_binary_structure(3, _RANK[connectivity])
    values = sorted((int(v) for v in np.unique(labels) if v != 0), key=lambda v: (abs(v), v < 0))
    dense = np.zeros(labels.shape, np.int64)
    for k, v in enumerate(values, start=1):
        dense[labels == v] = k
    boxes = scipy.ndimage.find_objects(dense)
    peaks: list[Peak] = []
    for k, (v, box) in enumerate(zip(values, boxes, strict=True), start=1):
        inside = dense[box] == k
        height = np.where(inside, np.sign(v) * stat[box], -np.inf)
        height = np.nan_to_num(height, nan=-np.inf)
        local = inside & np.isfinite(height) & (height >= scipy.ndimage.maximum_filter(
            height, footprint=footprint, mode="constant", cval=-np.inf))
        cand = np.argwhere(local)  # C order: the tie-break
        order = np.argsort(-height[tuple(cand.T)], kind="stable")
        offset = np.array([s.start for s in box])
        taken: list[np.ndarray] = []
        for ijk in cand[order] + offset:
            mm = (affine @ np.array([*ijk, 1.0]))[:3]
            if any(np.linalg.norm(mm - t) < min_distance_mm for t in taken):
                continue
            taken.append(mm)
            idx = tuple(int(a) for a in ijk)
            peaks.append(Peak(cluster=v, rank=len(taken), value=float(stat[idx]), ijk=idx,
                              mm=tuple(float(a) for a in mm)))
            if len(taken) == max_peaks:
                break
    return peaks


def _check_kind(kind: str, df: tuple[float, float]) -> tuple[float, float]:
    if kind not in ("t", "F"):
        raise ConfigError(f"kind: expected 't' or 'F'; got {kind!r}")
    df1, df2 = (float(d) for d in df)
    if not (np.isfinite(df2) and df2 > 0 and np.isfinite(df1) and df1 > 0):
        raise ConfigError(f"df: expected two positive degrees of freedom (df1, df2); got {df!r}")
    return df1, df2


def equivalent_z(stat, *, kind: str, df: tuple[float, float]) -> np.ndarray:
    """The standard normal Z with the same upper-tail p as a t or F value (SPM's "Z_E").

    Parameters
    ----------
    stat : array_like
        t or F values.
    kind : {"t", "F"}
    df : (float, float)
        ``(df1, df2)``; a t statistic uses ``df2`` (the residual degrees of freedom).

    Returns
    -------
    numpy.ndarray, float64, shape of ``stat``
        ``Z = Phi^-1(1 - p)`` with ``p`` the upper-tail p of ``stat``: signed like t for t
        values (a negative t gives a negative Z), finite even where ``p`` underflows float64.

    Notes
    -----
    Computed in log space, ``Z = -ndtri_exp(log p)``, so ``t = 60`` at 20 df (``p ~ 1e-24``) or
    beyond keeps its rank instead of becoming ``inf``.
    """
    df1, df2 = _check_kind(kind, df)
    stat = np.asarray(stat, dtype=np.float64)
    logp = np.asarray(scipy.stats.t.logsf(stat, df2) if kind == "t" else scipy.stats.f.logsf(stat, df1, df2))
    under = np.isneginf(logp) & np.isfinite(stat)
    if under.any():  # scipy's logsf underflows beyond ~1e-308: the leading term of the beta tail
        logp = np.where(under, _log_upper_tail(np.where(under, stat, 1.0), kind, df1, df2), logp)
    return -scipy.special.ndtri_exp(logp)


def _log_upper_tail(stat: np.ndarray, kind: str, df1: float, df2: float) -> np.ndarray:
    """log P(T > stat) for huge ``stat``: ``I_x(a, b) ~ x^a / (a B(a, b))`` as ``x -> 0``.

    t: ``P = I_x(df2/2, 1/2) / 2`` with ``x = df2 / (df2 + t^2)``; F: ``P = I_x(df2/2, df1/2)``
    with ``x = df2 / (df2 + df1 F)``. The relative error is ``O(x)``, below 1e-300 where used.
    """
    a = df2 / 2.0
    if kind == "t":
        b, half = 0.5, np.log(0.5)
        log_x = np.log(df2) - 2.0 * np.log(np.abs(stat)) - np.log1p(df2 / stat ** 2)
    else:
        b, half = df1 / 2.0, 0.0
        log_x = np.log(df2) - np.log(df1 * stat) - np.log1p(df2 / (df1 * stat))
    return half + a * log_x - np.log(a) - scipy.special.betaln(a, b)


def tail_p(stat, *, kind: str, df: tuple[float, float], tail: str = "positive") -> np.ndarray:
    """Uncorrected p of t or F values for the tested tail.

    Parameters
    ----------
    stat : array_like
        t or F values.
    kind : {"t", "F"}
    df : (float, float)
        ``(df1, df2)``.
    tail : {"positive", "negative", "both"}
        ``positive``: P(T >= t); ``negative``: P(T <= t); ``both``: 2 P(T >= |t|). F values
        always use the upper tail.

    Returns
    -------
    numpy.ndarray, float64, shape of ``stat``
    """
    df1, df2 = _check_kind(kind, df)
    if tail not in ("positive", "negative", "both"):
        raise ConfigError(f"tail: expected 'positive', 'negative' or 'both'; got {tail!r}")
    stat = np.asarray(stat, dtype=np.float64)
    if kind == "F":
        return scipy.stats.f.sf(stat, df1, df2)
    if tail == "positive":
        return scipy.stats.t.sf(stat, df2)
    if tail == "negative":
        return scipy.stats.t.sf(-stat, df2)
    return np.minimum(1.0, 2.0 * scipy.stats.t.sf(np.abs(stat), df2))
