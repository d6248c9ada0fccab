"""Tissue volumes in mL from probability maps (pure tensor code)."""

from __future__ import annotations

import torch

from vbmkit.errors import ImageError

TISSUES = ("gm", "wm", "csf")


def tissue_volumes(probs: torch.Tensor, voxel_volume_ml: float) -> dict[str, float]:
    """GM, WM, CSF and total intracranial volume of probability maps.

    Parameters
    ----------
    probs : torch.Tensor
        (3, X, Y, Z) float probabilities of GM, WM and CSF (CAT12's p1, p2, p3), in [0, 1].
    voxel_volume_ml : float
        Volume of one voxel in mL (|det A| / 1000 for an affine A in mm).

    Returns
    -------
    dict
        ``gm_ml``, ``wm_ml``, ``csf_ml``, ``tiv_ml`` (their sum, as CAT12's TIV) and the
        fractions ``gm_frac``, ``wm_frac``, ``csf_frac`` of TIV (CAT12's vol_rel_CGW).

    Notes
    -----
    V_k = voxel volume * sum_x p_k(x): partial-volume voxels count with their fraction.
    Sums are taken in float64 so that ~10^7 voxels add up without rounding loss.
    """
    if probs.ndim != 4 or probs.shape[0] != 3:
        raise ImageError(f"tissue_volumes: expected probabilities of shape (3, X, Y, Z); got {tuple(probs.shape)}")
    if not voxel_volume_ml > 0:
        raise ImageError(f"tissue_volumes: expected a positive voxel volume in mL; got {voxel_volume_ml}")
    sums = probs.detach().double().clamp(0.0, 1.0).sum(dim=(1, 2, 3)).cpu() * float(voxel_volume_ml)
    out = {f"{t}_ml": float(v) for t, v in zip(TISSUES, sums, strict=True)}
    tiv = float(sums.sum())
    out["tiv_ml"] = tiv
    for t in TISSUES:
        out[f"{t}_frac"] = out[f"{t}_ml"] / tiv if tiv > 0 else float("nan")
    return out
