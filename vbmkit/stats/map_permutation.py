"""Whole-map permutation inference: voxel maxT, TFCE and cluster extent/mass FWE.

TFCE and cluster statistics need each permutation's whole map, so this engine runs
*permutations outer*: a block of B transforms at a time over the whole mask gives a (B, V)
statistic (one GEMM, the Freedman-Lane algebra of :mod:`vbmkit.stats.permutation`), which is
unmasked to (B, X, Y, Z) and reduced per map to its maxima. :func:`freedman_lane` (voxel
blocks outer) stays the faster choice when only maxT is wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from vbmkit.errors import ConfigError
from vbmkit.stats.chunking import default_memory_bytes
from vbmkit.stats.clusters import cluster_statistics
from vbmkit.stats.design import Contrast, check_contrast, ones_in_span, standardise_design
from vbmkit.stats.exchange import check_blocks, draw_transforms
from vbmkit.stats.glm import checked_inputs
from vbmkit.stats.inference import p_to_f, p_to_t
from vbmkit.stats.memory import map_permutation_parts
from vbmkit.stats.permutation import _orth, _Plan, _plan, transformed_statistic
from vbmkit.stats.tfce import E_DEFAULT, H_DEFAULT, TAILS, TFCE_CONNECTIVITY, _tfce_positive

#: Largest block of permutations computed at once.
MAX_BATCH = 64


@dataclass(frozen=True)
class TfceSettings:
    """TFCE parameters (Smith & Nichols 2009 defaults; 6-connectivity as FSL and nilearn)."""

    e: float = E_DEFAULT
    h: float = H_DEFAULT
    connectivity: int = TFCE_CONNECTIVITY


@dataclass(frozen=True)
class ClusterFwe:
    """One observed cluster with its FWE p values.

    Attributes
    ----------
    index : int
        Its value in ``cluster_labels``: 1, 2, ... for positive clusters (largest first),
        -1, -2, ... for negative ones (tail ``negative`` or ``both``).
    extent : int
        Voxels.
    mass : float
        Sum of ``|stat| - threshold`` over the cluster.
    p_fwe_extent, p_fwe_mass : float
        Share of transforms whose largest cluster extent (mass) is at least this one's.
    peak_ijk : tuple of int
        Voxel of the largest ``|stat|``.
    """

    index: int
    extent: int
    mass: float
    p_fwe_extent: float
    p_fwe_mass: float
    peak_ijk: tuple[int, int, int]


@dataclass(frozen=True)
class MapInferenceResult:
    """FWE inference of one contrast on a (X, Y, Z) grid (CPU tensors; NaN p outside the mask).

    Attributes
    ----------
    kind, tail, scheme : str
        ``"t"``/``"F"``; ``positive``/``negative``/``both``; ``permute``/``flip``.
    n_permutations : int
        Transforms run, identity included (entry 0 of every ``max_null_*``).
    stat : torch.Tensor, (X, Y, Z) float32
        Observed t or F (0 outside the mask).
    p_fwe_voxel : torch.Tensor, (X, Y, Z) float64
        maxT FWE p (two-sided with ``both``: of ``|t|`` against max ``|t|``).
    max_null_voxel : torch.Tensor, (J,) float64
    tfce, p_fwe_tfce : torch.Tensor (X, Y, Z) float64, or None
        Signed TFCE (negative for the negative tail) and its FWE p (of ``|TFCE|``).
    max_null_tfce : torch.Tensor (J,) float64, or None
    cluster_threshold : float or None
        Cluster-forming threshold on the statistic (``|t|`` for ``both``).
    cluster_labels : torch.Tensor (X, Y, Z) int32, or None
        ``ClusterFwe.index`` of each voxel, 0 outside clusters.
    clusters : tuple of ClusterFwe
        Largest extent first.
    max_null_extent, max_null_mass : torch.Tensor (J,) float64, or None
    """

    kind: str
    tail: str
    scheme: str
    n_permutations: int
    stat: torch.Tensor
    p_fwe_voxel: torch.Tensor
    max_null_voxel: torch.Tensor
    tfce: torch.Tensor | None
    p_fwe_tfce: torch.Tensor | None
    max_null_tfce: torch.Tensor | None
    cluster_threshold: float | None
    cluster_labels: torch.Tensor | None
    clusters: tuple[ClusterFwe, ...]
    max_null_extent: torch.Tensor | None
    max_null_mass: torch.Tensor | None


def fwe_p(observed: np.ndarray, max_null: np.ndarray) -> np.ndarray:
    """``#{j : max_null_j >= observed} / J`` for each observed value (identity in the null)."""
    ordered = np.sort(max_null)
    return (max_null.size - np.searchsorted(ordered, observed, side="left")) / max_null.size


def _flip_plan(contrast: Contrast, X: np.ndarray, columns: Sequence[str]) -> _Plan:
    """Plan without centring: sign flips do not keep the mean, so the constant stays in the basis."""
    check_contrast(contrast, X, columns)
    xs, transform = standardise_design(X, columns)
    cs = contrast.matrix @ transform
    qz = _orth(xs @ scipy.linalg.null_space(cs))
    tested = xs @ np.linalg.solve(xs.T @ xs, cs.T)
    tested = tested - qz @ (qz.T @ tested)
    qc = tested / np.linalg.norm(tested) if contrast.kind == "t" else _orth(tested)
    return _Plan(contrast.name, contrast.kind, contrast.matrix.shape[0], qz, np.hstack([qz, qc]), False)


def _tests_mean(contrast: Contrast, X: np.ndarray, columns: Sequence[str]) -> bool:
    xs, transform = standardise_design(X, columns)
    z = xs @ scipy.linalg.null_space(contrast.matrix @ transform)
    return ones_in_span(xs) and not (z.shape[1] and ones_in_span(z))


def transform_rows(plan: _Plan, perms: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """``M^T T_j R_z`` for transforms ``e_j[i] = signs[j, i] e[perms[j, i]]``: (J * P', N) float64."""
    m = torch.from_numpy(plan.m)
    qz = torch.from_numpy(plan.qz)
    inv = torch.argsort(perms, dim=1)
    b = (m[inv] * torch.gather(signs, 1, inv)[..., None]).transpose(1, 2)  # (J, P', N)
    if qz.shape[1]:
        b = b - (b @ qz) @ qz.T
    return b.reshape(-1, b.shape[-1])


def _batch_stats(plan: _Plan, rows: torch.Tensor, yc: torch.Tensor, resid_ss: torch.Tensor, df2: float
                 ) -> torch.Tensor:
    """t or F of a block of transforms over all voxels: (J, V) float32 (as ``freedman_lane``)."""
    zj = (rows @ yc).view(-1, plan.m.shape[1], yc.shape[1])
    return transformed_statistic(plan, zj, resid_ss, df2)


def _signed_parts(grid: np.ndarray, tail: str) -> list[tuple[int, np.ndarray]]:
    """(sign, map whose positive part is that tail) for the tails in use."""
    return [(s, s * grid) for s in ((1,) if tail == "positive" else (-1,) if tail == "negative" else (1, -1))]


def permutation_inference(
    Y: torch.Tensor, X: np.ndarray, contrasts: Sequence[Contrast], *, mask: np.ndarray | torch.Tensor,
    n_permutations: int, seed: int = 0, device: str | torch.device = "cpu",
    tfce: TfceSettings | None = TfceSettings(), cluster_p: float | None = 0.001,  # noqa: B008 (frozen)
    cluster_connectivity: int = 26, tail: str = "positive", scheme: str = "auto",
    blocks: np.ndarray | torch.Tensor | None = None, memory_bytes: int | None = None,
    progress: Callable[[int, int], None] | None = None, columns: Sequence[str] | None = None,
) -> dict[str, MapInferenceResult]:
    """FWE p maps by permutation (Freedman-Lane) or sign flipping: maxT, TFCE and clusters.

    Parameters
    ----------
    Y : torch.Tensor, shape (N, V), float32
        Masked data, voxels in C order of ``mask``'s True entries.
    X : numpy.ndarray, shape (N, P)
        Design matrix.
    contrasts : sequence of Contrast
    mask : numpy.ndarray or torch.Tensor, shape (X, Y, Z), bool
        Grid geometry of the V voxels (``mask.sum() == V``).
    n_permutations : int
        Transforms including the identity; all distinct ones are run once instead when there
        are no more than requested (exact test).
    seed : int
        Seed of the transforms (shared by the contrasts).
    device : str or torch.device
        Where the statistics are computed; TFCE and cluster labelling run on the host.
    tfce : TfceSettings or None
        TFCE parameters; None skips TFCE.
    cluster_p : float or None
        Uncorrected one-sided p of the cluster-forming threshold (t or F quantile of the
        contrast's degrees of freedom; per tail for ``both``); None skips cluster inference.
    cluster_connectivity : {6, 18, 26}
        Neighbourhood of the clusters (default 26, as FSL randomise ``-c`` and SPM).
    tail : {"positive", "negative", "both"}
        t contrasts only (F maps are always positive). ``both``: two-sided p from the null
        of the maximum over both tails.
    scheme : {"auto", "permute", "flip"}
        ``auto``: sign flipping for contrasts of the mean (one-sample, paired differences),
        permutation otherwise.
    blocks : array, shape (N,), optional
        Exchangeability blocks: permute within blocks, or flip whole blocks.
    memory_bytes : int, optional
        Budget of one block of transforms (default as :mod:`vbmkit.stats.chunking`); sets the
        transforms per block (see :func:`vbmkit.stats.memory.map_permutation_parts`), at least
        one and at most ``MAX_BATCH``.
    progress : callable(done, total), optional
        Called after each block of transforms of each contrast.
    columns : sequence of str, optional
        Design column names for messages.

    Returns
    -------
    dict
        contrast name -> MapInferenceResult.

    Raises
    ------
    ConfigError
        Bad ``tail``, ``scheme``, ``cluster_p``, ``mask``, ``blocks`` or fewer than 2 transforms.
    DesignError
        Bad design or contrast; a mean contrast with ``scheme='permute'``.

    Notes
    -----
    A transform j maps the nuisance residuals ``R_z y`` to ``e_j[i] = s_ji e[pi_j(i)]``;
    ``z_j = M^T e_j`` is one GEMM row block per transform (see ``freedman_lane``). Sign
    flipping assumes symmetric errors (Winkler et al. 2014). FWE p of a voxel, TFCE value or
    cluster: the share of transforms whose maximum over the map is at least as large.
    """
    if tail not in TAILS:
        raise ConfigError(f"tail: expected one of {', '.join(TAILS)}; got {tail!r}")
    if scheme not in ("auto", "permute", "flip"):
        raise ConfigError(f"scheme: expected auto, permute or flip; got {scheme!r}")
    if cluster_p is not None and not 0 < cluster_p < 1:
        raise ConfigError(f"cluster_p: expected a probability in (0, 1) or None; got {cluster_p!r}")
    dev, X, columns = checked_inputs(Y, X, columns, device)
    n, v = Y.shape
    mask_np = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
    if mask_np.ndim != 3 or mask_np.dtype != bool or int(mask_np.sum()) != v:
        raise ConfigError(f"mask: expected a 3-D bool array with {v} True voxels (one per column of Y); got "
                          f"dtype {mask_np.dtype}, shape {mask_np.shape}, {int(mask_np.sum())} True")
    blocks_np = check_blocks(blocks, n)
    df2 = float(n - X.shape[1])
    results = {}
    for contrast in contrasts:
        flip = _tests_mean(contrast, X, columns) if scheme == "auto" else scheme == "flip"
        plan = _flip_plan(contrast, X, columns) if flip else _plan(contrast, X, columns)
        perms, signs, _ = draw_transforms(n, n_permutations, scheme="flip" if flip else "permute",
                                          blocks=blocks_np, seed=seed)
        results[contrast.name] = _run_contrast(
            plan, Y, mask_np, perms, signs, df2=df2, dev=dev, tfce=tfce, cluster_p=cluster_p,
            connectivity=cluster_connectivity, tail=tail if plan.kind == "t" else "positive",
            scheme="flip" if flip else "permute", memory_bytes=memory_bytes, progress=progress)
    return results


def _run_contrast(plan: _Plan, Y: torch.Tensor, mask: np.ndarray, perms: torch.Tensor, signs: torch.Tensor, *,
                  df2: float, dev: torch.device, tfce: TfceSettings | None, cluster_p: float | None,
                  connectivity: int, tail: str, scheme: str, memory_bytes: int | None,
                  progress: Callable[[int, int], None] | None) -> MapInferenceResult:
    n, v = Y.shape
    j_total = perms.shape[0]
    yd = Y.to(dev, torch.float32)
    yc = yd - yd.mean(0) if plan.centre else yd
    resid_ss = (yc * yc).sum(0)
    if plan.qz.shape[1]:
        a = torch.from_numpy(plan.qz.T.copy()).to(dev, torch.float32) @ yc
        resid_ss = resid_ss - (a * a).sum(0)
    threshold = None
    if cluster_p is not None:
        threshold = p_to_t(cluster_p, df2) if plan.kind == "t" else p_to_f(cluster_p, plan.q, df2)
    budget = memory_bytes if memory_bytes is not None else default_memory_bytes(dev)
    _, fixed, per_perm, _ = map_permutation_parts(n, plan.m.shape[1], [plan.q], j_total, v, mask.size)
    batch = int(max(1, min(MAX_BATCH, j_total, (budget - fixed) // per_perm)))
    null_vox = np.zeros(j_total)
    null_tfce = np.zeros(j_total) if tfce is not None else None
    null_ext = np.zeros(j_total) if threshold is not None else None
    null_mass = np.zeros(j_total) if threshold is not None else None
    observed = obs_tfce = obs_clusters = None
    grid = np.zeros(mask.shape)
    for j0 in range(0, j_total, batch):
        rows = transform_rows(plan, perms[j0:j0 + batch], signs[j0:j0 + batch]).to(dev, torch.float32)
        stat = _batch_stats(plan, rows, yc, resid_ss, df2).to("cpu", torch.float64).numpy()
        if j0 == 0:
            observed = stat[0].astype(np.float32)
        for i, one in enumerate(stat):
            j = j0 + i
            grid[mask] = one
            parts = _signed_parts(grid, tail)
            null_vox[j] = float({"positive": one.max(), "negative": -one.min(),
                                 "both": np.abs(one).max()}[tail]) if one.size else 0.0
            if tfce is not None:
                maps = [(s, _tfce_positive(p, tfce.e, tfce.h, tfce.connectivity)) for s, p in parts]
                null_tfce[j] = max(float(t.max()) for _, t in maps)
                if j == 0:
                    obs_tfce = sum(s * t for s, t in maps)
            if threshold is not None:
                found = [(s, *cluster_statistics(p, threshold, connectivity=connectivity)) for s, p in parts]
                null_ext[j] = max([float(e.max()) for _, _, e, _ in found if e.size] + [0.0])
                null_mass[j] = max([float(m.max()) for _, _, _, m in found if m.size] + [0.0])
                if j == 0:
                    obs_clusters = [(s, lab, ext, mass, p) for (s, lab, ext, mass), (_, p) in
                                    zip(found, parts, strict=True)]
        if progress is not None:
            progress(min(j0 + batch, j_total), j_total)
    stat_grid = np.zeros(mask.shape, np.float32)
    stat_grid[mask] = observed
    signed = {"positive": stat_grid, "negative": -stat_grid, "both": np.abs(stat_grid)}[tail]
    p_vox = np.full(mask.shape, np.nan)
    p_vox[mask] = fwe_p(signed[mask].astype(np.float64), null_vox)
    tfce_map = p_tfce = None
    if tfce is not None:
        tfce_map = torch.from_numpy(obs_tfce)
        p = np.full(mask.shape, np.nan)
        p[mask] = fwe_p(np.abs(obs_tfce[mask]), null_tfce)
        p_tfce = torch.from_numpy(p)
    labels_t, clusters = None, ()
    if threshold is not None:
        labels_t, clusters = _observed_clusters(obs_clusters, mask.shape, null_ext, null_mass)
    return MapInferenceResult(
        kind=plan.kind, tail=tail, scheme=scheme, n_permutations=j_total, stat=torch.from_numpy(stat_grid),
        p_fwe_voxel=torch.from_numpy(p_vox), max_null_voxel=torch.from_numpy(null_vox), tfce=tfce_map,
        p_fwe_tfce=p_tfce, max_null_tfce=_tensor(null_tfce), cluster_threshold=threshold,
        cluster_labels=labels_t, clusters=clusters, max_null_extent=_tensor(null_ext),
        max_null_mass=_tensor(null_mass))


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return torch.from_numpy(a) if a is not None else None


def _observed_clusters(found, shape, null_ext: np.ndarray, null_mass: np.ndarray
                       ) -> tuple[torch.Tensor, tuple[ClusterFwe, ...]]:
    """Relabel the observed clusters largest first (negative indices for the negative tail)."""
    labels = np.zeros(shape, np.int32)
    out = []
    for sign, lab, ext, mass, part in found:
        order = sorted(range(ext.size), key=lambda i: (-ext[i], -mass[i]))
        for new, old in enumerate(order, start=1):
            sel = lab == old + 1
            labels[sel] = sign * new
            flat = np.flatnonzero(sel.ravel())
            peak = np.unravel_index(flat[np.argmax(part.ravel()[flat])], shape)
            out.append(ClusterFwe(
                index=sign * new, extent=int(ext[old]), mass=float(mass[old]),
                p_fwe_extent=float(fwe_p(np.array([float(ext[old])]), null_ext)[0]),
                p_fwe_mass=float(fwe_p(np.array([float(mass[old])]), null_mass)[0]),
                peak_ijk=tuple(int(a) for a in peak)))
    out.sort(key=lambda c: (-c.extent, -c.mass))
    return torch.from_numpy(labels), tuple(out)
