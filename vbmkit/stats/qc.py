"""Sample homogeneity: the mean correlation of each subject's map with all others.

CAT12's "check sample homogeneity" correlates every subject's modulated GM map (mwp1) with
every other one; a subject whose mean correlation is far below the sample's is an outlier
(failed preprocessing, artefact, unusual anatomy). This module holds the maths only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Homogeneity:
    """Result of :func:`sample_homogeneity`.

    Attributes
    ----------
    correlation : torch.Tensor
        (N, N) float64 Pearson correlations between subjects' maps (1 on the diagonal).
    mean_correlation : torch.Tensor
        (N,) float64 mean correlation of each subject with the N - 1 others.
    zscore : torch.Tensor
        (N,) float64 ``(mean_correlation - mean) / SD`` over subjects (SD with N - 1).
    threshold : float
        ``mean - k SD`` of the mean correlations; subjects below it are flagged.
    flagged : torch.Tensor
        (N,) bool, True where ``mean_correlation < threshold``.
    """

    correlation: torch.Tensor
    mean_correlation: torch.Tensor
    zscore: torch.Tensor
    threshold: float
    flagged: torch.Tensor


def correlation_matrix(
    chunks: Iterable[torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Pearson correlation between the rows of a matrix given as column chunks.

    Parameters
    ----------
    chunks : iterable of torch.Tensor
        Blocks (N, v_i) of the data matrix Y (N subjects x V voxels), split along voxels, so
        that V need never sit in memory at once. Every block must have the same N.
    device : torch.device or str
        Where the products are computed (a GPU when present).
    progress : callable, optional
        Called with the number of voxels of each block after it is processed.

    Returns
    -------
    torch.Tensor
        (N, N) float64 correlation matrix on ``device``.

    Raises
    ------
    ValueError
        When there is no voxel, blocks disagree on N, or a row is constant (zero variance).

    Notes
    -----
    Accumulates per block, in float64, the row sums s = sum_v y, and the Gram matrix
    G = sum_v y y^T (one GEMM per block). With V voxels, the covariance is
    C = (G - s s^T / V) / V and r_ij = C_ij / sqrt(C_ii C_jj). Float64 accumulation keeps the
    subtraction ``G - s s^T / V`` accurate for maps with a large mean.
    """
    device = torch.device(device)
    gram: torch.Tensor | None = None
    sums: torch.Tensor | None = None
    n_vox = 0
    for block in chunks:
        if block.ndim != 2:
            raise ValueError(f"chunks: expected 2-D blocks (N, v); got shape {tuple(block.shape)}")
        b = block.to(device=device, dtype=torch.float64)
        if gram is None:
            gram = torch.zeros(b.shape[0], b.shape[0], dtype=torch.float64, device=device)
            sums = torch.zeros(b.shape[0], dtype=torch.float64, device=device)
        elif b.shape[0] != gram.shape[0]:
            raise ValueError(f"chunks: expected {gram.shape[0]} rows in every block; got {b.shape[0]}")
        gram += b @ b.T
        sums += b.sum(dim=1)
        n_vox += b.shape[1]
        if progress is not None:
            progress(b.shape[1])
    if gram is None or sums is None or n_vox == 0:
        raise ValueError("chunks: expected at least one voxel; got none")
    cov = (gram - torch.outer(sums, sums) / n_vox) / n_vox
    var = cov.diagonal().clone()
    if bool((var <= 1e-12 * var.abs().max().clamp_min(1e-300)).any()):
        bad = torch.nonzero(var <= 1e-12 * var.abs().max().clamp_min(1e-300)).flatten().tolist()
        raise ValueError(f"chunks: expected every subject's map to vary over voxels; rows {bad} are constant")
    sd = var.sqrt()
    corr = cov / torch.outer(sd, sd)
    corr.fill_diagonal_(1.0)
    return corr.clamp(-1.0, 1.0)


def sample_homogeneity(correlation: torch.Tensor, *, sd_threshold: float = 2.0) -> Homogeneity:
    """Mean correlation of each subject with the others, and flags at ``mean - k SD``.

    Parameters
    ----------
    correlation : torch.Tensor
        (N, N) symmetric correlation matrix, N >= 3.
    sd_threshold : float
        k > 0: subjects whose mean correlation is below ``mean - k SD`` are flagged (CAT12
        marks subjects about 2 SD below the sample mean).

    Returns
    -------
    Homogeneity

    Notes
    -----
    mean_i = (sum_j r_ij - r_ii) / (N - 1); the mean and the SD (N - 1 denominator) are over
    the N values mean_i. When all mean_i are equal (SD 0) nobody is flagged.
    """
    if correlation.ndim != 2 or correlation.shape[0] != correlation.shape[1]:
        raise ValueError(f"correlation: expected a square (N, N) matrix; got shape {tuple(correlation.shape)}")
    n = correlation.shape[0]
    if n < 3:
        raise ValueError(f"correlation: expected at least 3 subjects for a homogeneity check; got {n}")
    if not sd_threshold > 0:
        raise ValueError(f"sd_threshold: expected a positive number of SDs; got {sd_threshold}")
    r = correlation.to(torch.float64)
    mean_r = (r.sum(dim=1) - r.diagonal()) / (n - 1)
    centre = mean_r.mean()
    sd = mean_r.std(unbiased=True)
    threshold = float(centre - sd_threshold * sd)
    if float(sd) > 0:
        z = (mean_r - centre) / sd
    else:
        z = torch.zeros_like(mean_r)
    flagged = mean_r < threshold if float(sd) > 0 else torch.zeros(n, dtype=torch.bool, device=r.device)
    return Homogeneity(correlation=r, mean_correlation=mean_r, zscore=z, threshold=threshold,
                       flagged=flagged)


#: Scale that makes the median absolute deviation a consistent estimate of the SD of normal data.
MAD_TO_SD = 1.4826
#: Scale that makes the mean absolute deviation a consistent estimate of the SD (sqrt(pi / 2)).
MEANAD_TO_SD = 1.2533


def robust_z(values: torch.Tensor) -> torch.Tensor:
    """Robust z-scores ``(x - median) / (1.4826 MAD)`` of N values.

    Parameters
    ----------
    values : torch.Tensor
        (N,) numbers, e.g. each subject's mean map value inside the mask.

    Returns
    -------
    torch.Tensor
        (N,) float64. The median of an even N is the mean of the two middle values.

    Notes
    -----
    MAD = median |x - median(x)|. When more than half the values are equal the MAD is 0; the
    scale is then 1.2533 times the mean absolute deviation from the median (a consistent SD
    estimate as well), and when that is 0 too (all values equal) every z is 0.
    """
    x = torch.as_tensor(values).to(torch.float64).reshape(-1)
    if x.numel() == 0:
        return x
    med = x.quantile(0.5)  # interpolates: the mean of the two middle values for an even N
    dev = (x - med).abs()
    scale = MAD_TO_SD * dev.quantile(0.5)
    if float(scale) <= 0:
        scale = MEANAD_TO_SD * dev.mean()
    if float(scale) <= 0:
        return torch.zeros_like(x)
    return (x - med) / scale


@dataclass(frozen=True, eq=False)
class MapSanity:
    """Per-subject summaries of N maps under a mask (:func:`map_sanity`).

    Attributes
    ----------
    n_voxels : int
        V, the number of in-mask voxels.
    nonzero_fraction : torch.Tensor
        (N,) float64 fraction of the V voxels whose value is not 0.
    constant : torch.Tensor
        (N,) bool, True where a map has one value in every in-mask voxel.
    first_value : torch.Tensor
        (N,) float64 value of the first in-mask voxel (the value of a constant map).
    mean : torch.Tensor
        (N,) float64 in-mask mean of each map.
    zscore : torch.Tensor
        (N,) float64 :func:`robust_z` of ``mean`` over subjects.
    """

    n_voxels: int
    nonzero_fraction: torch.Tensor
    constant: torch.Tensor
    first_value: torch.Tensor
    mean: torch.Tensor
    zscore: torch.Tensor


def map_sanity(data: torch.Tensor, *, block: int = 64) -> MapSanity:
    """Summaries that reveal empty, constant and outlying subject maps.

    Parameters
    ----------
    data : torch.Tensor
        (N, V) values of N subjects' maps at V in-mask voxels (finite; no NaN), any float dtype.
    block : int
        Subjects summarised at a time (temporaries are ``block`` x V, never N x V).

    Returns
    -------
    MapSanity

    Raises
    ------
    ValueError
        When ``data`` is not 2-D or has no voxel.
    """
    if data.ndim != 2 or data.shape[1] == 0:
        raise ValueError(f"data: expected (N, V) maps with V >= 1; got shape {tuple(data.shape)}")
    n, v = data.shape
    nonzero, constant, means = [], [], []
    for start in range(0, n, block):
        x = data[start:start + block]
        nonzero.append((x != 0).sum(dim=1).to(torch.float64) / v)
        constant.append(x.amax(dim=1) == x.amin(dim=1))
        means.append(x.sum(dim=1, dtype=torch.float64) / v)
    mean = torch.cat(means)
    return MapSanity(n_voxels=int(v), nonzero_fraction=torch.cat(nonzero), constant=torch.cat(constant),
                     first_value=data[:, 0].to(torch.float64), mean=mean, zscore=robust_z(mean))
