"""Intensity model of the tissue segmentation: Gaussians for pure tissues and partial-volume
mixtures between neighbouring tissues (as in CAT12's AMAP and FSL FAST).

Classes are ordered by T1 intensity, each with its CAT12 label value:
``CSF (1), CSF/GM (1.5), GM (2), GM/WM (2.5), WM (3)``. Pure classes ``CSF, GM, WM`` have a
mean and variance each; a partial-volume (PV) class between pure classes ``a`` and ``b`` has no
parameters of its own: its density is the average over mixing fractions ``t`` of the Gaussian of
the mixture ``t a + (1 - t) b``. An optional sixth class, CSF/WM (index 5), mixes CSF and WM:
the wall of the lateral ventricles, whose intensity spans GM's (``docs/algorithms_segmentation.md``).
"""

from __future__ import annotations

import math

import torch

#: Label value of each of the 5 classes (CSF, CSF/GM, GM, GM/WM, WM).
CLASS_LABELS = (1.0, 1.5, 2.0, 2.5, 3.0)
#: Index of the pure classes (CSF, GM, WM) among the 5 classes.
PURE = (0, 2, 4)
#: (lower pure, upper pure) index into ``mu``/``var`` (CSF, GM, WM) for the two PV classes.
PV_PAIRS = ((0, 1), (1, 2))
#: Index of the optional CSF/WM partial-volume class (after the five intensity-ordered ones).
CSF_WM = 5
#: Its pure classes, as index into ``mu``/``var`` (CSF, WM).
CSF_WM_PAIR = (0, 2)

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_loglik(y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log N(y; mean, var), broadcasting."""
    return -0.5 * (_LOG_2PI + torch.log(var) + (y - mean) ** 2 / var)


def class_loglik(y: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, *, n_mix: int = 7,
                 n_classes: int = 5) -> torch.Tensor:
    """Log-likelihood of every voxel under the 5 classes (6 with CSF/WM).

    Parameters
    ----------
    y : torch.Tensor
        (N,) bias-corrected intensities.
    mu, var : torch.Tensor
        (3,) means and variances of the pure classes CSF, GM, WM.
    n_mix : int
        Mixing fractions ``t = (i + 0.5) / n_mix`` used to integrate the PV density.
    n_classes : {5, 6}
        6 adds the CSF/WM class (index :data:`CSF_WM`).

    Returns
    -------
    torch.Tensor
        (n_classes, N) log p(y | class) for CSF, CSF/GM, GM, GM/WM, WM[, CSF/WM].

    Notes
    -----
    PV density: ``p(y | a/b) = 1/n sum_t N(y; t mu_a + (1-t) mu_b, t var_a + (1-t) var_b)``,
    a midpoint rule for the integral over a uniform fraction ``t`` in (0, 1).
    """
    if n_classes not in (5, 6):
        raise ValueError(f"n_classes: expected 5 or 6 (with CSF/WM); got {n_classes}")
    t = (torch.arange(n_mix, device=y.device, dtype=y.dtype) + 0.5) / n_mix
    out = torch.empty((n_classes, y.numel()), device=y.device, dtype=y.dtype)
    for k, p in zip(PURE, range(3), strict=True):
        out[k] = gaussian_loglik(y, mu[p], var[p])
    mixtures = ((1, PV_PAIRS[0]), (3, PV_PAIRS[1])) + (((CSF_WM, CSF_WM_PAIR),) if n_classes == 6 else ())
    for k, (a, b) in mixtures:
        m = (t * mu[a] + (1 - t) * mu[b])[:, None]
        v = (t * var[a] + (1 - t) * var[b])[:, None]
        out[k] = torch.logsumexp(gaussian_loglik(y[None], m, v), dim=0) - math.log(n_mix)
    return out


def class_loglik_table(y: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, *, n_mix: int = 7,
                       n_nodes: int = 4096, n_classes: int = 5) -> torch.Tensor:
    """:func:`class_loglik` looked up (nearest node) in a table over the intensity range.

    The likelihood depends on the voxel only through its intensity, so evaluating it on
    ``n_nodes`` intensities and interpolating costs two gathers per voxel instead of
    ``2 n_mix + 3`` Gaussians; at 4096 nodes over [0, max y] the error is far below the
    class separation. Returns (n_classes, N) like :func:`class_loglik`.
    """
    hi = float(y.max()) * 1.0001 + 1e-6
    nodes = torch.linspace(0.0, hi, n_nodes, device=y.device, dtype=y.dtype)
    table = class_loglik(nodes, mu, var, n_mix=n_mix, n_classes=n_classes)
    idx = (y.clamp(0.0, hi) * ((n_nodes - 1) / hi)).round().long()  # nearest node
    return table[:, idx]


def update_parameters(y: torch.Tensor, post: torch.Tensor, *, min_var: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M-step: pure-class means/variances from pure posteriors; mixing weights from all.

    Parameters
    ----------
    y : torch.Tensor
        (N,) intensities.
    post : torch.Tensor
        (K, N) posteriors (K = 5 or 6).
    min_var : float
        Variance floor (intensity units squared): keeps a class from collapsing on a spike.

    Returns
    -------
    mu, var : torch.Tensor
        (3,) CSF, GM, WM.
    weights : torch.Tensor
        (K,) class proportions.
    """
    q = post[list(PURE)]
    n = q.sum(1).clamp_min(1e-6)
    mu = (q * y).sum(1) / n
    var = ((q * (y - mu[:, None]) ** 2).sum(1) / n).clamp_min(min_var)
    weights = post.sum(1) / post.sum().clamp_min(1e-6)
    return mu, var, weights


def kmeans_init(y: torch.Tensor, *, n_iter: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Three-class 1-D k-means on a histogram of ``y``, started at its 15/50/85 % quantiles.

    Returns
    -------
    mu, var : torch.Tensor
        (3,) ascending means (CSF, GM, WM) and within-cluster variances.
    """
    lo, hi = float(y.min()), float(y.max())
    hist = torch.histc(y.float(), bins=256, min=lo, max=hi).to(y.dtype)
    centres = lo + (torch.arange(256, device=y.device, dtype=y.dtype) + 0.5) * (hi - lo) / 256
    cdf = hist.cumsum(0) / hist.sum()
    mu = torch.stack([centres[int(torch.searchsorted(cdf, torch.tensor(q, dtype=cdf.dtype, device=cdf.device)).clamp_max(255))]
                      for q in (0.15, 0.5, 0.85)])
    for _ in range(n_iter):
        lab = (centres[None] - mu[:, None]).abs().argmin(0)
        for k in range(3):
            w = hist * (lab == k)
            if float(w.sum()) > 0:
                mu[k] = (w * centres).sum() / w.sum()
    lab = (centres[None] - mu[:, None]).abs().argmin(0)
    var = torch.stack([(hist * (lab == k) * (centres - mu[k]) ** 2).sum() / (hist * (lab == k)).sum().clamp_min(1)
                       for k in range(3)])
    mu, order = torch.sort(mu)
    return mu, var[order].clamp_min(((hi - lo) / 256) ** 2)

