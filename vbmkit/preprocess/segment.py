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
import torch.nn.functional as F

from vbmkit.errors import ImageError
from vbmkit.preprocess.bias import bias_residual, normalized_smooth
from vbmkit.preprocess.gmm import (
    CLASS_LABELS,
    CSF_WM,
    PURE,
    class_loglik_table,
    kmeans_init,
    update_parameters,
)
from vbmkit.preprocess.mrf import compatibility, mrf_energy

N_ITER = 25
N_FINE = 6  # of the n_iter EM iterations, those on the full-resolution grid
MRF_STRENGTH = 0.3
BIAS_FWHM_MM = 40.0
PRIOR_WEIGHT = 0.5
DARK_FRACTION = 0.08  # of the 99th percentile in the mask: below, a voxel does not fit parameters
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
        ``weights`` (5 or 6 class proportions), ``log_likelihood`` (mean log-evidence per brain voxel) per iteration,
        ``used_priors``, ``csf_wm_ml`` (volume assigned to the CSF/WM class, mL; 0 without it).
    """

    p0: torch.Tensor
    probs: torch.Tensor
    bias: torch.Tensor
    info: dict = field(default_factory=dict)


def _check(image: torch.Tensor, brain_mask: torch.Tensor, priors: torch.Tensor | None,
           csf_wm_region: torch.Tensor | None) -> None:
    if image.ndim != 3:
        raise ImageError(f"segment: image must be (X, Y, Z); got shape {tuple(image.shape)}")
    if tuple(brain_mask.shape) != tuple(image.shape):
        raise ImageError(f"segment: brain_mask shape {tuple(brain_mask.shape)} != image shape {tuple(image.shape)}")
    if priors is not None and tuple(priors.shape) != (3, *image.shape):
        raise ImageError(f"segment: priors must be (3, X, Y, Z) GM, WM, CSF = (3, {', '.join(map(str, image.shape))}); "
                         f"got {tuple(priors.shape)}")
    if csf_wm_region is not None:
        if priors is None:
            raise ImageError("segment: csf_wm_region needs spatial priors (the CSF/WM class prior is built from them)")
        if tuple(csf_wm_region.shape) != tuple(image.shape):
            raise ImageError(f"segment: csf_wm_region must be (X, Y, Z) = {tuple(image.shape)} like the image; "
                             f"got {tuple(csf_wm_region.shape)}")
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


def _class_priors(priors: torch.Tensor, weight: float, region: torch.Tensor | None = None) -> torch.Tensor:
    """(K, N) log prior of CSF, CSF/GM, GM, GM/WM, WM[, CSF/WM] from (3, N) GM, WM, CSF priors.

    PV classes get the geometric mean of their two tissues' priors; the CSF/WM class (only with
    ``region``, (N,) in [0, 1]) gets ``(1 - pi_GM) * region``: CSF and WM meet without GM between
    them only at the ventricles, the region says where those are, and ``1 - pi_GM`` keeps the
    caudate and thalamus, which border the ventricles, to GM."""
    p = priors.clamp_min(0)
    p = p / p.sum(0, keepdim=True).clamp_min(1e-6)
    p = p.clamp_min(_PRIOR_FLOOR)
    csf, gm, wm = p[2], p[0], p[1]
    classes = [csf, torch.sqrt(csf * gm), gm, torch.sqrt(gm * wm), wm]
    if region is not None:
        classes.append((1.0 - gm) * region.clamp(0.0, 1.0).clamp_min(_PRIOR_FLOOR))
    k = torch.stack(classes)
    k = k / k.sum(0, keepdim=True)
    return weight * torch.log(k)


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
    csf_wm_region: torch.Tensor | None = None,
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
        Maximum EM iterations: the last ``N_FINE`` (6) at full resolution, the others on a
        2x coarser grid.
    mrf_strength : float
        Potts weight ``beta`` on the neighbour-averaged posteriors (0: no MRF).
    bias_fwhm_mm : float
        FWHM of the smoothing that defines the bias field, mm (0: no bias correction).
    prior_weight : float
        Exponent of the spatial priors (posterior ~ prior^w * likelihood * MRF); < 1 tempers
        priors that are blurry or not perfectly aligned.
    csf_wm_region : torch.Tensor, optional
        (X, Y, Z) in [0, 1], needs ``priors``: where CSF/WM mixtures may occur (a band around the
        lateral ventricles). Adds the sixth class CSF/WM, whose voxels are split into CSF and WM
        by their intensity instead of being read as GM. None: the five classes only.
    tol : float
        The coarse-grid stage stops when the mean log-evidence per voxel changes less than this.
    device : str or torch.device
        Where to compute; results are returned there.
    progress : callable (done, total), optional
        Called after each EM iteration.

    Returns
    -------
    Segmentation

    Notes
    -----
    Five classes: CSF, CSF/GM, GM, GM/WM, WM (and CSF/WM with ``csf_wm_region``). With corrected intensities ``y / b``,
    ``log q_k(i) = log w_k + w_p log pi_k(i) + log p(y_i / b_i | k) + beta sum_j C_kj qbar_j(i)
    - log Z_i`` (E-step, mean field), then means/variances of pure classes and proportions
    ``w_k`` (M-step), then ``log b`` += weighted Gaussian smoothing of the log residual of pure
    voxels (normalised to zero mean in the brain). Tissue fractions: pure posteriors plus PV
    posteriors split by the fraction ``t = (y - mu_a) / (mu_b - mu_a)`` implied by the intensity.
    """
    _check(image, brain_mask, priors, csf_wm_region)
    dev = torch.device(device)
    full_shape = tuple(image.shape)
    box = _bbox(brain_mask.bool())
    mask_vol = brain_mask[box].to(dev).bool()
    crop_shape = tuple(mask_vol.shape)
    img = image[box].to(dev, torch.float32)
    y_in = img[mask_vol]
    if float(y_in.max()) <= 0:
        raise ImageError("segment: image must have positive intensities inside brain_mask; the maximum there is "
                         f"{float(y_in.max()):g}")
    sub = y_in[:: max(1, y_in.numel() // 1_000_000)]  # deterministic subsample: quantile size limit
    scale = float(torch.quantile(sub, 0.99))
    img = (img / scale).clamp(1e-3, 4.0)
    pri = None if priors is None else priors[(slice(None), *box)].to(dev, torch.float32)
    if csf_wm_region is not None:  # carried as a fourth prior channel through the coarse grid
        pri = torch.cat([pri, csf_wm_region[box].to(dev, torch.float32)[None]])
    n_classes = 6 if csf_wm_region is not None else 5
    vox = tuple(float(v) for v in voxel_size_mm)

    mu, var = kmeans_init(img[mask_vol])
    state = _State(mu=mu, var=var, weights=torch.full((n_classes,), 1.0 / n_classes, device=dev),
                   log_bias=torch.zeros(crop_shape, device=dev), post=None)
    history: list[float] = []
    n_coarse = max(0, n_iter - N_FINE)
    total = n_coarse + min(n_iter, N_FINE)
    done = 0
    if n_coarse > 0 and min(crop_shape) >= 8:
        # most iterations on a 2x coarser grid: the parameters and the bias converge there at
        # 1/8 of the cost; the fine grid then refines posteriors, MRF and bias
        c_img = F.avg_pool3d(img[None, None] * mask_vol, 2, ceil_mode=True)[0, 0]
        c_frac = F.avg_pool3d(mask_vol[None, None].float(), 2, ceil_mode=True)[0, 0]
        c_mask = c_frac > 0.5
        c_img = c_img / c_frac.clamp_min(1e-6)
        c_pri = None if pri is None else F.avg_pool3d(pri[None], 2, ceil_mode=True)[0]
        c_state = _State(state.mu, state.var, state.weights, torch.zeros(c_mask.shape, device=dev), None)
        c_state, done = _em(c_img, c_mask, c_pri, c_state, n_iter=n_coarse, vox=tuple(2 * v for v in vox),
                            mrf_strength=mrf_strength, bias_fwhm_mm=bias_fwhm_mm, prior_weight=prior_weight,
                            tol=tol, history=history, progress=progress, done=done, total=total)
        up = F.interpolate(torch.cat([c_state.log_bias[None], c_state.post])[None], scale_factor=2,
                           mode="trilinear", align_corners=False)[0][:, :crop_shape[0], :crop_shape[1], :crop_shape[2]]
        state = _State(c_state.mu, c_state.var, c_state.weights, up[0] * mask_vol, up[1:] * mask_vol)
    state, done = _em(img, mask_vol, pri, state, n_iter=min(n_iter, N_FINE), vox=vox, mrf_strength=mrf_strength,
                      bias_fwhm_mm=bias_fwhm_mm, prior_weight=prior_weight, tol=0.0, history=history,
                      progress=progress, done=done, total=total)

    mu, post = state.mu, state.post
    yc = img * torch.exp(-state.log_bias)
    t_cg = ((yc - mu[0]) / (mu[1] - mu[0])).clamp(0, 1)  # GM fraction in a CSF/GM voxel
    t_gw = ((yc - mu[1]) / (mu[2] - mu[1])).clamp(0, 1)  # WM fraction in a GM/WM voxel
    gm = post[2] + post[1] * t_cg + post[3] * (1 - t_gw)
    wm = post[4] + post[3] * t_gw
    csf = post[0] + post[1] * (1 - t_cg)
    csf_wm_ml = 0.0
    if n_classes == 6:
        t_cw = ((yc - mu[0]) / (mu[2] - mu[0])).clamp(0, 1)  # WM fraction in a CSF/WM voxel
        wm = wm + post[CSF_WM] * t_cw
        csf = csf + post[CSF_WM] * (1 - t_cw)
        csf_wm_ml = float((post[CSF_WM] * mask_vol).sum()) * vox[0] * vox[1] * vox[2] / 1000.0
    frac = torch.stack([gm, wm, csf])
    frac = frac / frac.sum(0, keepdim=True).clamp_min(1e-6) * mask_vol

    probs = torch.zeros((3, *full_shape), device=dev)
    probs[(slice(None), *box)] = frac
    p0 = probs[0] * 2.0 + probs[1] * 3.0 + probs[2] * 1.0
    bias = torch.ones(full_shape, device=dev)
    bias[box] = torch.where(mask_vol, torch.exp(state.log_bias), 1.0)
    info = {
        "iterations": done,
        "classes": ["CSF", "CSF/GM", "GM", "GM/WM", "WM", "CSF/WM"][:n_classes],
        "class_labels": list(CLASS_LABELS) + ([2.0] if n_classes == 6 else []),  # CSF/WM: mean of 1 and 3
        "means": [float(v) * scale for v in state.mu],
        "variances": [float(v) * scale ** 2 for v in state.var],
        "weights": [float(v) for v in state.weights],
        "log_likelihood": history,
        "used_priors": priors is not None,
        "csf_wm_ml": csf_wm_ml,
    }
    return Segmentation(p0=p0, probs=probs, bias=bias, info=info)


def _prior_weights_update(post: torch.Tensor, log_pri: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mixing proportions under spatial priors (SPM's unified segmentation, Ashburner & Friston
    2005): ``w_k = sum_i q_ik / sum_i (pi_ik / sum_j w_j pi_ij)``. The plain proportion update
    (mean posterior) would count the prior twice and let broad classes swallow the PV classes."""
    pi = torch.exp(log_pri)
    denom = (weights[:, None] * pi).sum(0).clamp_min(1e-12)
    inside = (post.sum(0) > 0).to(pi.dtype)
    w = post.sum(1) / ((pi / denom) * inside).sum(1).clamp_min(1e-12)
    return w / w.sum()


def _tie_csf_wm(weights: torch.Tensor) -> torch.Tensor:
    """(6,) proportions with CSF/WM's set to GM's, renormalised. The CSF/WM prior marks where
    mixing may occur, not how often (it is no calibrated probability), so the proportion update
    drove its weight towards 0 and the class vanished (0.06 mL on FreeSurfer's norm.mgz). Tied to
    GM's, the two compete for a ventricle-wall voxel on prior and likelihood alone."""
    tied = weights.clone()
    tied[CSF_WM] = tied[2]
    return tied / tied.sum()


@dataclass
class _State:
    mu: torch.Tensor  # (3,) CSF, GM, WM means
    var: torch.Tensor  # (3,)
    weights: torch.Tensor  # (K,) class proportions (K = 5, or 6 with CSF/WM)
    log_bias: torch.Tensor  # (X, Y, Z), 0 outside the mask
    post: torch.Tensor | None  # (K, X, Y, Z) posteriors, 0 outside the mask


def _em(img: torch.Tensor, mask: torch.Tensor, pri: torch.Tensor | None, state: _State, *, n_iter: int,
        vox: tuple[float, float, float], mrf_strength: float, bias_fwhm_mm: float, prior_weight: float,
        tol: float, history: list[float], progress, done: int, total: int) -> tuple[_State, int]:
    """EM iterations on one grid; ``img`` (X, Y, Z) scaled intensities, ``mask`` bool; ``pri`` (3, X, Y, Z)
    GM, WM, CSF priors, or (4, X, Y, Z) with the CSF/WM region as fourth channel (six classes)."""
    shape = tuple(mask.shape)
    k = state.weights.numel()
    m = mask.reshape(-1).float()
    n_in = float(m.sum())
    y = img.reshape(-1) * m + (1 - m) * 1e-3
    # near-zero voxels (the rim of a generous brain mask, zero-filled outside a stripped brain)
    # are classified but do not fit the parameters: they would drag the CSF class to zero
    fit = m * (y > DARK_FRACTION).float()
    log_y = torch.log(y)
    log_pri = None
    if pri is not None:
        flat = pri.reshape(pri.shape[0], -1)
        log_pri = _class_priors(flat[:3], prior_weight, flat[3] if k == 6 else None)
    mu, var, weights = state.mu, state.var, state.weights
    weights_before = weights  # the proportions the E-step used (SPM's update needs them)
    log_bias = state.log_bias.reshape(-1)
    post = None if state.post is None else state.post.reshape(k, -1)
    comp = compatibility(k, device=img.device)
    min_var = float(1e-4 * mu[2] ** 2)
    for i in range(n_iter):
        yc = y * torch.exp(-log_bias)
        logp = class_loglik_table(yc, mu, var, n_classes=k) + torch.log(weights.clamp_min(1e-6))[:, None]
        if log_pri is not None:
            logp += log_pri
        if post is not None and mrf_strength > 0:
            logp += mrf_energy(post.reshape(k, *shape), mask, vox, mrf_strength, comp).reshape(k, -1)
        lse = torch.logsumexp(logp, dim=0)
        post = torch.exp(logp - lse) * m
        history.append(float((lse * m).sum()) / n_in)
        q_fit = post * fit  # posteriors of the voxels that fit parameters and bias
        mu, var, weights = update_parameters(yc, q_fit, min_var=min_var)
        if log_pri is not None:
            weights = _prior_weights_update(q_fit, log_pri, weights_before)
        if k == 6:
            weights = _tie_csf_wm(weights)
        weights_before = weights
        if bias_fwhm_mm > 0 and (i >= 1 or state.post is not None):
            resid, w = bias_residual(log_y, log_bias, q_fit, mu, var, PURE)
            step = normalized_smooth(resid.reshape(shape), w.reshape(shape), bias_fwhm_mm, vox).reshape(-1)
            log_bias = (log_bias + step) * m
            log_bias = (log_bias - (w * log_bias).sum() / w.sum()) * m
        done += 1
        if progress is not None:
            progress(done, total)
        if tol > 0 and i > 5 and abs(history[-1] - history[-2]) < tol:
            break
    return _State(mu, var, weights, log_bias.reshape(shape), post.reshape(k, *shape)), done
