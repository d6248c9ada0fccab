"""Bayesian tissue segmentation of a T1 image: GM, WM, CSF fractions and CAT12's p0 label map.

A Gaussian mixture with partial-volume classes (:mod:`vbmkit.preprocess.gmm`), optional spatial
tissue priors, a smooth multiplicative bias field (:mod:`vbmkit.preprocess.bias`) and a
mean-field Potts Markov random field (:mod:`vbmkit.preprocess.mrf`), fitted by EM, in the spirit
of SPM's unified segmentation and CAT12's AMAP. See ``docs/algorithms_segmentation.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.bias import bias_residual, normalized_smooth
from vbmkit.preprocess.gmm import CLASS_LABELS, PURE, class_loglik, kmeans_init, update_parameters
from vbmkit.preprocess.mrf import compatibility, mrf_energy

N_ITER = 25
MRF_STRENGTH = 2.0
BIAS_FWHM_MM = 40.0
PRIOR_WEIGHT = 0.5
_PRIOR_FLOOR = 1e-3  # keeps a misaligned prior from forbidding a class outright


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    p0 : torch.Tensor
        (X, Y, Z) float32 CAT12 label map: 0 background, 1 CSF, 2 GM, 3 WM, continuous in
        between (``1 CSF + 2 GM + 3 WM`` fractions).
    probs : torch.Tensor
        (3, X, Y, Z) float32 tissue fractions GM, WM, CSF (p1, p2, p3): sum 1 in the mask, 0 outside.
    bias : torch.Tensor
        (X, Y, Z) float32 multiplicative bias field (image = bias * corrected), 1 outside the mask.
    info : dict
        ``iterations``, ``means``/``variances`` (CSF, GM, WM, in units of the input image),
        ``weights`` (5 class proportions), ``log_likelihood`` per iteration, ``converged``.
    """

    p0: torch.Tensor
    probs: torch.Tensor
    bias: torch.Tensor
    info: dict = field(default_factory=dict)


def _check(image: torch.Tensor, brain_mask: torch.Tensor, priors: torch.Tensor | None) -> None:
    if image.ndim != 3:
        raise ImageError(f"segment: image must be (X, Y, Z); got shape {tuple(image.shape)}")
    if tuple(brain_mask.shape) != tuple(image.shape):
        raise ImageError(f"segment: brain_mask shape {tuple(brain_mask.shape)} != image shape {tuple(image.shape)}")
    if priors is not None and tuple(priors.shape) != (3, *image.shape):
        raise ImageError(f"segment: priors must be (3, X, Y, Z) GM, WM, CSF = (3, {', '.join(map(str, image.shape))}); "
                         f"got {tuple(priors.shape)}")
    if not torch.isfinite(image).all():
        raise ImageError("segment: image contains NaN or Inf values")
    if int(brain_mask.sum()) < 64:
        raise ImageError(f"segment: brain_mask must hold at least 64 voxels; got {int(brain_mask.sum())}")


def _bbox(mask: torch.Tensor, margin: int = 1) -> tuple[slice, slice, slice]:
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = torch.nonzero(mask.any(dim=other)).flatten()
        out.append(slice(max(0, int(hit[0]) - margin), min(mask.shape[axis], int(hit[-1]) + 1 + margin)))
    return tuple(out)


def _class_priors(priors: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """(5, N) log prior of CSF, CSF/GM, GM, GM/WM, WM from (3, N) GM, WM, CSF priors."""
    p = priors[:, mask].clamp_min(0)
    p = p / p.sum(0, keepdim=True).clamp_min(1e-6)
    p = p.clamp_min(_PRIOR_FLOOR)
    csf, gm, wm = p[2], p[0], p[1]
    five = torch.stack([csf, torch.sqrt(csf * gm), gm, torch.sqrt(gm * wm), wm])
    five = five / five.sum(0, keepdim=True)
    return weight * torch.log(five)


def segment(
    image: torch.Tensor,
    brain_mask: torch.Tensor,
    *,
    priors: torch.Tensor | None = None,
    voxel_size_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    n_iter: int = N_ITER,
    mrf_strength: float = MRF_STRENGTH,
    bias_fwhm_mm: float = BIAS_FWHM_MM,
    prior_weight: float = PRIOR_WEIGHT,
    tol: float = 1e-5,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Segmentation:
    """Segment a brain T1 image into GM, WM and CSF fractions.

    Parameters
    ----------
    image : torch.Tensor
        (X, Y, Z) float T1 intensities (any positive scale; brain-extracted or not).
    brain_mask : torch.Tensor
        (X, Y, Z) bool; only voxels inside are classified.
    priors : torch.Tensor, optional
        (3, X, Y, Z) GM, WM, CSF tissue probabilities on the same grid (e.g. Template_4_GS
        GM, WM and rest pulled through the affine; inside the mask rest is CSF). None: intensity
        and MRF only, classes ordered by intensity (CSF < GM < WM, as in T1).
    voxel_size_mm : 3 floats
        Voxel size, mm (bias smoothing and MRF neighbour weights).
    n_iter : int
        Maximum EM iterations.
    mrf_strength : float
        Potts weight ``beta`` on the neighbour-averaged posteriors (0: no MRF).
    bias_fwhm_mm : float
        FWHM of the smoothing that defines the bias field, mm (0: no bias correction).
    prior_weight : float
        Exponent of the spatial priors (posterior ~ prior^w * likelihood * MRF); < 1 tempers
        priors that are blurry or not perfectly aligned.
    tol : float
        Stop when the mean log-likelihood per voxel changes less than this.
    device : str or torch.device
        Where to compute; results are returned there.
    progress : callable (done, total), optional
        Called after each EM iteration.

    Returns
    -------
    Segmentation

    Notes
    -----
    Five classes: CSF, CSF/GM, GM, GM/WM, WM. With corrected intensities ``y / b``,
    ``log q_k(i) = log w_k + w_p log pi_k(i) + log p(y_i / b_i | k) + beta sum_j C_kj qbar_j(i)
    - log Z_i`` (E-step, mean field), then means/variances of pure classes and proportions
    ``w_k`` (M-step), then ``log b`` += weighted Gaussian smoothing of the log residual of pure
    voxels (normalised to zero mean in the brain). Tissue fractions: pure posteriors plus PV
    posteriors split by the fraction ``t = (y - mu_a) / (mu_b - mu_a)`` implied by the intensity.
    """
    _check(image, brain_mask, priors)
    dev = torch.device(device)
    full_shape = tuple(image.shape)
    box = _bbox(brain_mask.bool())
    img = image[box].to(dev, torch.float32)
    mask = brain_mask[box].to(dev).bool()
    y_raw = img[mask]
    if float(y_raw.max()) <= 0:
        raise ImageError("segment: image must have positive intensities inside brain_mask; the maximum there is "
                         f"{float(y_raw.max()):g}")
    scale = float(torch.quantile(y_raw[torch.randperm(y_raw.numel(), device=dev)[:1_000_000]], 0.99))
    y = (y_raw / scale).clamp_min(1e-3)
    log_y = torch.log(y)
    log_pri = None if priors is None else _class_priors(priors[(slice(None), *box)].to(dev, torch.float32), mask, prior_weight)

    mu, var = kmeans_init(y)
    min_var = float(1e-4 * mu[2] ** 2)
    weights = torch.full((5,), 0.2, device=dev)
    log_bias = torch.zeros_like(y)
    comp = compatibility(5, device=dev)
    q_vol = None
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, n_iter + 1):
        yc = y * torch.exp(-log_bias)
        ll = class_loglik(yc, mu, var)
        logp = ll + torch.log(weights.clamp_min(1e-6))[:, None]
        if log_pri is not None:
            logp = logp + log_pri
        if q_vol is not None and mrf_strength > 0:
            logp = logp + mrf_energy(q_vol, mask, voxel_size_mm, mrf_strength, comp)[:, mask]
        lse = torch.logsumexp(logp, dim=0)
        post = torch.exp(logp - lse)
        history.append(float(lse.mean()))
        q_vol = torch.zeros((5, *mask.shape), device=dev)
        q_vol[:, mask] = post
        mu, var, weights = update_parameters(yc, post, min_var=min_var)
        if bias_fwhm_mm > 0 and it >= 2:
            resid, w = bias_residual(log_y, log_bias, post, mu, var, PURE)
            vol_r = torch.zeros(mask.shape, device=dev)
            vol_w = torch.zeros(mask.shape, device=dev)
            vol_r[mask], vol_w[mask] = resid, w
            step = normalized_smooth(vol_r, vol_w, bias_fwhm_mm, voxel_size_mm)[mask]
            log_bias = log_bias + step
            log_bias = log_bias - (w * log_bias).sum() / w.sum()
        if progress is not None:
            progress(it, n_iter)
        if it > 5 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break

    yc = y * torch.exp(-log_bias)
    t_cg = ((yc - mu[0]) / (mu[1] - mu[0])).clamp(0, 1)  # GM fraction in a CSF/GM voxel
    t_gw = ((yc - mu[1]) / (mu[2] - mu[1])).clamp(0, 1)  # WM fraction in a GM/WM voxel
    gm = post[2] + post[1] * t_cg + post[3] * (1 - t_gw)
    wm = post[4] + post[3] * t_gw
    csf = post[0] + post[1] * (1 - t_cg)
    frac = torch.stack([gm, wm, csf])
    frac = frac / frac.sum(0, keepdim=True).clamp_min(1e-6)

    probs = torch.zeros((3, *full_shape), device=dev)
    crop = torch.zeros((3, *mask.shape), device=dev)
    crop[:, mask] = frac
    probs[(slice(None), *box)] = crop
    p0 = probs[0] * 2.0 + probs[1] * 3.0 + probs[2] * 1.0
    bias = torch.ones(full_shape, device=dev)
    bias_crop = torch.ones(mask.shape, device=dev)
    bias_crop[mask] = torch.exp(log_bias)
    bias[box] = bias_crop
    info = {
        "iterations": it,
        "converged": converged,
        "classes": ["CSF", "CSF/GM", "GM", "GM/WM", "WM"],
        "class_labels": list(CLASS_LABELS),
        "means": [float(v) * scale for v in mu],
        "variances": [float(v) * scale ** 2 for v in var],
        "weights": [float(v) for v in weights],
        "log_likelihood": history,
        "used_priors": priors is not None,
    }
    return Segmentation(p0=p0, probs=probs, bias=bias, info=info)
