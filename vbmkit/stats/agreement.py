"""Agreement between two pipelines: overlap of label maps, correlation of maps, ICC, Bland-Altman.

Pure tensor code (torch), batched over a leading axis where that makes sense. Sums are taken
in float64 so that the figures match a NumPy/SciPy reference to ~1e-12 whatever the input dtype.

Conventions
-----------
- A CAT12 label map ``p0`` holds 0 (background), 1 (CSF), 2 (GM), 3 (WM) and partial-volume
  values in between. Tissue probabilities are read from it linearly, as deepmriprep's
  ``one_hot`` does: ``p_c = max(0, 1 - |p0 - c|)`` for c = 1, 2, 3 (so p0 = 2.5 is half GM,
  half WM; values in (0, 1) are partial CSF).
- Hard labels are ``floor(p0 + 0.5)`` clipped to 0..3: a voxel belongs to the class nearest to
  its p0 value; the partial-volume values 1.5 and 2.5 go to the higher class (GM, WM).
- Degenerate cases (empty sets, constant maps) give NaN, which the workflows store as null.
"""

from __future__ import annotations

import math

import torch

#: Tissue classes of a p0 label map, in CAT12's order of values.
TISSUES = ("csf", "gm", "wm")


def _f64(x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x).to(torch.float64)


def _nan_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    out = num / den
    return torch.where(den > 0, out, torch.full_like(out, math.nan))


def tissue_probabilities(p0: torch.Tensor) -> torch.Tensor:
    """Partial-volume tissue fractions of a p0 label map.

    Parameters
    ----------
    p0 : torch.Tensor
        (...) label-map values in [0, 3] (values above 3 are clipped).

    Returns
    -------
    torch.Tensor
        (3, ...) float64: CSF, GM, WM fractions ``max(0, 1 - |p0 - c|)`` for c = 1, 2, 3.
    """
    x = _f64(p0).clamp(0.0, 3.0)
    return torch.stack([(1.0 - (x - c).abs()).clamp(min=0.0) for c in (1.0, 2.0, 3.0)])


def hard_labels(p0: torch.Tensor) -> torch.Tensor:
    """Nearest class of a p0 map: ``floor(p0 + 0.5)`` clipped to 0..3; int64, same shape."""
    return torch.floor(_f64(p0) + 0.5).clamp(0, 3).to(torch.int64)


def dice(a: torch.Tensor, b: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Dice coefficient ``2 |A n B| / (|A| + |B|)`` of boolean sets along ``dim``; NaN when both empty."""
    a, b = torch.as_tensor(a).bool(), torch.as_tensor(b).bool()
    inter = (a & b).sum(dim=dim).to(torch.float64)
    return _nan_div(2.0 * inter, (a.sum(dim=dim) + b.sum(dim=dim)).to(torch.float64))


def jaccard(a: torch.Tensor, b: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Jaccard index ``|A n B| / |A u B|`` of boolean sets along ``dim``; NaN when both empty."""
    a, b = torch.as_tensor(a).bool(), torch.as_tensor(b).bool()
    return _nan_div((a & b).sum(dim=dim).to(torch.float64), (a | b).sum(dim=dim).to(torch.float64))


def probabilistic_dice(p: torch.Tensor, q: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Soft Dice ``2 sum(p q) / (sum p + sum q)`` of fractions in [0, 1] along ``dim``.

    This is torchreg's ``dice_score`` (used by deepmriprep); equal to :func:`dice` for 0/1 input.
    """
    p, q = _f64(p), _f64(q)
    return _nan_div(2.0 * (p * q).sum(dim=dim), p.sum(dim=dim) + q.sum(dim=dim))


def label_agreement(p0_a: torch.Tensor, p0_b: torch.Tensor, *, mask: torch.Tensor | None = None,
                    batched: bool = False) -> dict[str, torch.Tensor]:
    """Dice, Jaccard and probabilistic Dice per tissue between two p0 label maps.

    Parameters
    ----------
    p0_a, p0_b : torch.Tensor
        (...) label maps on one grid, or (B, ...) B pairs of maps when ``batched``.
    mask : torch.Tensor, optional
        Boolean, broadcastable to the maps; voxels outside are ignored (default: all voxels).
    batched : bool
        The first axis indexes pairs of maps.

    Returns
    -------
    dict
        ``dice``, ``jaccard``, ``prob_dice``: each (3,) float64, or (3, B) when ``batched``,
        in the order of :data:`TISSUES` (CSF, GM, WM).
    """
    a, b = _f64(p0_a), _f64(p0_b)
    if a.shape != b.shape:
        raise ValueError(f"label_agreement: expected two maps of one shape; got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if mask is not None:
        m = torch.as_tensor(mask).bool().expand(a.shape)
        a, b = torch.where(m, a, 0.0), torch.where(m, b, 0.0)  # background outside the mask
    if not batched:
        a, b = a[None], b[None]
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    la, lb = hard_labels(a), hard_labels(b)
    pa, pb = tissue_probabilities(a), tissue_probabilities(b)  # (3, B, V)
    out: dict[str, list[torch.Tensor]] = {"dice": [], "jaccard": [], "prob_dice": []}
    for c in range(3):
        out["dice"].append(dice(la == c + 1, lb == c + 1))
        out["jaccard"].append(jaccard(la == c + 1, lb == c + 1))
        out["prob_dice"].append(probabilistic_dice(pa[c], pb[c]))
    res = {k: torch.stack(v) for k, v in out.items()}
    return res if batched else {k: v[:, 0] for k, v in res.items()}


def pearson_r(x: torch.Tensor, y: torch.Tensor, *, mask: torch.Tensor | None = None,
              dim: int | None = -1) -> torch.Tensor:
    """Pearson correlation along ``dim`` (optionally only where ``mask`` is true).

    Parameters
    ----------
    x, y : torch.Tensor
        Same shape, e.g. (B, V) maps of B subjects or (V,) one pair of maps.
    mask : torch.Tensor, optional
        Boolean, broadcastable to ``x``; voxels outside take no part.
    dim : int or None
        Axis of the values; None correlates all elements (e.g. two (X, Y, Z) maps).

    Returns
    -------
    torch.Tensor
        float64, ``x``'s shape without ``dim``; NaN where either input is constant.

    Notes
    -----
    r = sum (x - mx)(y - my) / sqrt(sum (x - mx)^2 sum (y - my)^2), means over the masked values,
    computed in float64 after centring (no cancellation).
    """
    x, y = _f64(x), _f64(y)
    if x.shape != y.shape:
        raise ValueError(f"pearson_r: expected two inputs of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    w = torch.ones_like(x) if mask is None else torch.as_tensor(mask).bool().expand(x.shape).to(torch.float64)
    if dim is None:
        x, y, w, dim = x.reshape(-1), y.reshape(-1), w.reshape(-1), -1
    n = w.sum(dim=dim, keepdim=True)
    mx = _nan_div((w * x).sum(dim=dim, keepdim=True), n)
    my = _nan_div((w * y).sum(dim=dim, keepdim=True), n)
    dx, dy = w * (x - mx), w * (y - my)
    sxy = (dx * dy).sum(dim=dim)
    den = torch.sqrt((dx * dx).sum(dim=dim) * (dy * dy).sum(dim=dim))
    return _nan_div(sxy, den).clamp(-1.0, 1.0)


def icc(ratings: torch.Tensor, *, kind: str = "2,1") -> torch.Tensor:
    """Intraclass correlation of N targets rated by R raters (Shrout & Fleiss 1979).

    Parameters
    ----------
    ratings : torch.Tensor
        (..., N, R): N subjects (rows) measured by R methods (columns), e.g. (regions, N, 2)
        ROI volumes of vbmkit and CAT12.
    kind : {"2,1", "3,1"}
        ``"2,1"``: two-way random effects, absolute agreement, single measure (default: a
        systematic offset between the pipelines lowers it, as a method comparison should).
        ``"3,1"``: two-way mixed effects, consistency (an offset does not count).

    Returns
    -------
    torch.Tensor
        float64 of shape (...); NaN when the total variance is zero.

    Notes
    -----
    With MSR = between-subject, MSC = between-rater and MSE = residual mean squares of the
    two-way ANOVA without replication:
    ICC(2,1) = (MSR - MSE) / (MSR + (R - 1) MSE + R (MSC - MSE) / N),
    ICC(3,1) = (MSR - MSE) / (MSR + (R - 1) MSE).
    """
    x = _f64(ratings)
    if x.ndim < 2 or x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(f"icc: expected ratings (..., N >= 2, R >= 2); got shape {tuple(x.shape)}")
    if kind not in ("2,1", "3,1"):
        raise ValueError(f"icc: expected kind '2,1' or '3,1'; got {kind!r}")
    n, r = x.shape[-2], x.shape[-1]
    grand = x.mean(dim=(-2, -1), keepdim=True)
    row = x.mean(dim=-1, keepdim=True)
    col = x.mean(dim=-2, keepdim=True)
    msr = r * ((row - grand) ** 2).sum(dim=(-2, -1)) / (n - 1)
    msc = n * ((col - grand) ** 2).sum(dim=(-2, -1)) / (r - 1)
    mse = ((x - row - col + grand) ** 2).sum(dim=(-2, -1)) / ((n - 1) * (r - 1))
    den = msr + (r - 1) * mse
    if kind == "2,1":
        den = den + r * (msc - mse) / n
    return _nan_div(msr - mse, den)


def bland_altman(a: torch.Tensor, b: torch.Tensor, *, dim: int = -1) -> dict[str, torch.Tensor]:
    """Bland-Altman mean difference and 95 % limits of agreement of ``a - b`` along ``dim``.

    Returns
    -------
    dict
        ``mean_diff``, ``sd_diff`` (ddof = 1), ``loa_low``, ``loa_high`` (mean -/+ 1.96 SD);
        float64, in the units of the input.
    """
    d = _f64(a) - _f64(b)
    n = d.shape[dim]
    mean = d.mean(dim=dim)
    sd = d.std(dim=dim, correction=1) if n > 1 else torch.full_like(mean, math.nan)
    return {"mean_diff": mean, "sd_diff": sd, "loa_low": mean - 1.96 * sd, "loa_high": mean + 1.96 * sd}


def suprathreshold_dice(t_a: torch.Tensor, t_b: torch.Tensor, threshold: float, *,
                        threshold_b: float | None = None, mask: torch.Tensor | None = None,
                        dim: int | None = -1) -> torch.Tensor:
    """Dice overlap of the voxels with t > threshold in both maps (one-sided, as SPM T-contrasts).

    Parameters
    ----------
    t_a, t_b : torch.Tensor
        Statistic maps of one shape.
    threshold : float
        Threshold of ``t_a`` (and of ``t_b`` unless ``threshold_b`` is given, e.g. for a
        reference map with other degrees of freedom).
    mask : torch.Tensor, optional
        Boolean, broadcastable; voxels outside count as below threshold.
    dim : int or None
        Axis of the voxels; None takes all elements.

    Notes
    -----
    A negative effect is a separate contrast (``-age``); NaN when no voxel passes in either map.
    """
    thr_b = threshold if threshold_b is None else threshold_b
    a, b = _f64(t_a) > threshold, _f64(t_b) > thr_b
    if mask is not None:
        m = torch.as_tensor(mask).bool().expand(a.shape)
        a, b = a & m, b & m
    if dim is None:
        a, b, dim = a.reshape(-1), b.reshape(-1), -1
    return dice(a, b, dim=dim)


def labels_from_probabilities(probs: torch.Tensor) -> torch.Tensor:
    """Hard labels 0..3 (background, CSF, GM, WM) from (3, ...) CSF, GM, WM probabilities.

    Each voxel takes the class of largest probability, background being ``1 - sum`` (clipped
    at 0), as SPM12's c1/c2/c3 maps are compared after 'hard labelling'. Ties go to the
    lower label.
    """
    p = _f64(probs)
    background = (1.0 - p.sum(dim=0, keepdim=True)).clamp(min=0.0)
    return torch.cat([background, p], dim=0).argmax(dim=0)


def probability_agreement(probs_a: torch.Tensor, probs_b: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dice and Jaccard after hard labelling, and probabilistic Dice, of (3, ...) tissue maps.

    Parameters
    ----------
    probs_a, probs_b : torch.Tensor
        (3, ...) CSF, GM, WM probabilities (e.g. vbmkit's p3, p1, p2 and SPM12's c3, c1, c2)
        on one grid.

    Returns
    -------
    dict
        ``dice``, ``jaccard``, ``prob_dice``: (3,) float64 in the order of :data:`TISSUES`.
    """
    a, b = _f64(probs_a), _f64(probs_b)
    if a.shape != b.shape or a.shape[0] != 3:
        raise ValueError(f"probability_agreement: expected two (3, ...) maps of one shape; got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    la, lb = labels_from_probabilities(a).reshape(-1), labels_from_probabilities(b).reshape(-1)
    fa, fb = a.reshape(3, -1), b.reshape(3, -1)
    return {
        "dice": torch.stack([dice(la == c + 1, lb == c + 1) for c in range(3)]),
        "jaccard": torch.stack([jaccard(la == c + 1, lb == c + 1) for c in range(3)]),
        "prob_dice": probabilistic_dice(fa, fb),
    }


def map_agreement(a: torch.Tensor, b: torch.Tensor, *, threshold: float = 0.1) -> dict[str, torch.Tensor]:
    """Pearson r of two maps within the voxels where their mean exceeds ``threshold``.

    The rule is the GLM's default mask (mean map > 0.1 for GM/WM densities), applied to the
    pair, so neither map's empty background inflates r. NaN means 'no data' (SPM12 writes it
    outside the field of view): a voxel NaN in either map fails the rule.

    Returns
    -------
    dict
        ``r`` (float64 scalar tensor) and ``n_voxels`` (int64 scalar tensor).
    """
    x, y = _f64(a).reshape(-1), _f64(b).reshape(-1)
    finite = torch.isfinite(x) & torch.isfinite(y)
    x, y = torch.where(finite, x, 0.0), torch.where(finite, y, 0.0)
    mask = finite & (0.5 * (x + y) > threshold)
    return {"r": pearson_r(x, y, mask=mask), "n_voxels": mask.sum()}


def volume_ml(fractions: torch.Tensor, voxel_volume_ml: float) -> torch.Tensor:
    """Tissue volume in mL: the sum of voxel fractions times the voxel volume (float64 sum)."""
    return _f64(fractions).sum() * float(voxel_volume_ml)
