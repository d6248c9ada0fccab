"""Ventricles that widen with age, as in real ageing: periventricular WM recedes, CSF fills it.

The lateral ventricles grow through adulthood (their volume roughly doubles between 20 and 80).
The simulator plants this as a pull displacement that points into the ventricles, largest at
their wall and fading within a few mm: sampling the WM at ``x + v(x)`` moves the CSF/WM boundary
outwards by ``|v|`` at the wall. GM is left exactly as it was (caudate and thalamus keep their
tissue), so the true periventricular GM does not change with age; a pipeline whose GM grows
there reads the wider CSF/WM wall as GM (issue 18).

Pure tensor code, voxel units.
"""

from __future__ import annotations

import torch

from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.simulate.atrophy import pull


def ventricle_field(ventricles: torch.Tensor, *, reach_vox: float = 2.0) -> torch.Tensor:
    """(3, X, Y, Z) pull displacement per unit widening: 1 voxel at the ventricle wall, pointing in.

    Parameters
    ----------
    ventricles : torch.Tensor
        (X, Y, Z) bool ventricle mask on the template grid.
    reach_vox : float
        FWHM, in voxels, of the smoothing of the mask whose gradient gives the direction; the
        displacement fades over about this distance from the wall.

    Returns
    -------
    torch.Tensor
        (3, X, Y, Z) float32; its largest norm is 1 (at the wall).
    """
    if ventricles.ndim != 3 or not bool(ventricles.any()):
        raise ValueError(f"ventricles: expected a non-empty (X, Y, Z) mask; got shape {tuple(ventricles.shape)} "
                         f"with {int(ventricles.sum()) if ventricles.ndim == 3 else 0} voxels")
    phi = smooth_fwhm(ventricles.float()[None, None], reach_vox, (1.0, 1.0, 1.0))[0, 0]
    grad = torch.stack(torch.gradient(phi))  # points into the ventricles (phi grows inwards)
    return (grad / grad.norm(dim=0).max().clamp_min(1e-12)).float()


def widen_ventricles(tissue: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """GM, WM, CSF fractions after the ventricles widen by ``displacement`` (voxels).

    Parameters
    ----------
    tissue : torch.Tensor
        (3, X, Y, Z) GM, WM, CSF fractions.
    displacement : torch.Tensor
        (3, X, Y, Z) pull displacement in voxels (:func:`ventricle_field` times the widening).

    Returns
    -------
    torch.Tensor
        (3, X, Y, Z): GM unchanged; WM the pulled WM where that is less (WM only recedes); CSF
        takes what WM gives up, so every voxel keeps its total.
    """
    if tuple(displacement.shape) != (3, *tissue.shape[1:]) or tissue.shape[0] != 3:
        raise ValueError(f"tissue (3, X, Y, Z) and displacement (3, X, Y, Z) on one grid expected; got "
                         f"{tuple(tissue.shape)} and {tuple(displacement.shape)}")
    gm, wm, csf = tissue.unbind(0)
    receded = torch.minimum(pull(wm[None], displacement)[0], wm)
    return torch.stack([gm, receded, csf + (wm - receded)])
