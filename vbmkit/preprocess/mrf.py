"""Markov random field of the tissue segmentation: a mean-field Potts prior on the 6-neighbourhood."""

from __future__ import annotations

import torch


def neighbour_mean(q: torch.Tensor, mask: torch.Tensor, voxel_size_mm: tuple[float, float, float]) -> torch.Tensor:
    """Weighted mean of ``q`` over the 6 face neighbours of every voxel inside ``mask``.

    Parameters
    ----------
    q : torch.Tensor
        (K, X, Y, Z) class posteriors (0 outside the mask).
    mask : torch.Tensor
        (X, Y, Z) bool.
    voxel_size_mm : 3 floats
        Neighbours along an axis weigh 1 / voxel size (closer voxels say more).

    Returns
    -------
    torch.Tensor
        (K, X, Y, Z): sum_n w_n q(n) / sum_n w_n over neighbours inside the mask (0 without any).
    """
    m = mask.to(q.dtype)
    acc = torch.zeros_like(q)
    wsum = torch.zeros_like(m)
    for axis, size in enumerate(voxel_size_mm):
        w = 1.0 / float(size)
        d = axis + 1  # axis of q (after K)
        n = q.shape[d]
        if n < 2:
            continue
        lo = [slice(None)] * 4
        hi = [slice(None)] * 4
        lo[d], hi[d] = slice(0, n - 1), slice(1, n)
        acc[tuple(lo)] += w * q[tuple(hi)]
        acc[tuple(hi)] += w * q[tuple(lo)]
        wsum[tuple(lo[1:])] += w * m[tuple(hi[1:])]
        wsum[tuple(hi[1:])] += w * m[tuple(lo[1:])]
    return acc / wsum.clamp_min(1e-12)


def compatibility(n_classes: int = 5, *, adjacent: float = 0.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """(K, K) Potts compatibility for intensity-ordered classes: 1 on the diagonal,
    ``adjacent`` between neighbouring classes (e.g. GM and GM/WM), 0 otherwise.

    With ``n_classes = 6`` the sixth class is CSF/WM (:data:`vbmkit.preprocess.gmm.CSF_WM`), not
    ordered by intensity: it neighbours the pure CSF (0) and WM (4) classes only, so a ventricle
    wall between CSF and WM supports it and a GM neighbour does not."""
    ordered = min(n_classes, 5)
    idx = torch.arange(ordered, device=device)
    dist = (idx[:, None] - idx[None]).abs()
    comp = torch.zeros((n_classes, n_classes), device=device)
    comp[:ordered, :ordered] = torch.where(dist == 0, 1.0, torch.where(dist == 1, adjacent, 0.0))
    if n_classes == 6:
        comp[5, 5] = 1.0
        comp[5, [0, 4]] = adjacent
        comp[[0, 4], 5] = adjacent
    return comp.to(dtype)


def mrf_energy(q: torch.Tensor, mask: torch.Tensor, voxel_size_mm: tuple[float, float, float], strength: float,
               comp: torch.Tensor) -> torch.Tensor:
    """Mean-field log prior ``strength * C @ mean_neighbour(q)``, shape (K, X, Y, Z).

    Notes
    -----
    Mean-field approximation of a Potts MRF ``p(z) ~ exp(beta sum_<ij> C[z_i, z_j])``: the
    expected energy of class ``k`` at voxel ``i`` is ``beta sum_j C_kj qbar_j(i)`` with
    ``qbar`` the neighbour-averaged posteriors (averaging makes ``beta`` independent of the
    neighbourhood size and of the mask border).
    """
    nb = neighbour_mean(q, mask, voxel_size_mm)
    k = q.shape[0]
    return strength * (comp @ nb.reshape(k, -1)).reshape(q.shape)
