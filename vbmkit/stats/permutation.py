"""Freedman-Lane permutation inference with the maximum statistic (family-wise error).

All permutations of a voxel block come out of one GEMM, like the subsample fits: the
permutation is moved from the data onto small (P x N) matrices, so the data are read once.
The algebra is written up in ``docs/algorithms_glm.md``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from vbmkit.errors import ConfigError, DesignError
from vbmkit.stats.chunking import CPU_MAX_WIDTH, chunk_size, iter_voxel_blocks
from vbmkit.stats.design import Contrast, check_contrast, ones_in_span, standardise_design
from vbmkit.stats.glm import checked_inputs

#: Largest permutation matrix stack kept in memory for the whole run (bytes); larger
#: stacks are rebuilt per voxel block.
CACHE_BYTES = 256 << 20
#: Elements of one batch's GEMM output aimed at when the data are narrow: fewer, larger
#: batches when there are few voxels and many permutations (loop overhead dominates there).
BATCH_ELEMENTS = 1 << 22
#: Beyond this many subjects N! exceeds any permutation count worth asking for (20! > 2e18).
EXACT_MAX_SUBJECTS = 20


@dataclass(frozen=True)
class PermutationResult:
    """Max-statistic permutation inference of one contrast (CPU tensors).

    Attributes
    ----------
    p_fwe : torch.Tensor, shape (V,), float64
        Family-wise error corrected p: the share of permutations (identity included) whose
        maximum statistic is at least the voxel's statistic.
    max_null : torch.Tensor, shape (n_permutations,), float64
        Maximum over voxels of each permutation's statistic; entry 0 is the identity
        (the observed maximum).
    stat : torch.Tensor, shape (V,), float32
        The observed statistic (equal to the full-sample t or F).
    """

    p_fwe: torch.Tensor
    max_null: torch.Tensor
    stat: torch.Tensor


@dataclass(frozen=True)
class _Plan:
    """Per-contrast matrices (float64, numpy) of the Freedman-Lane batch algebra."""

    name: str
    kind: str
    q: int
    qz: np.ndarray  # (N, Pz) orthonormal nuisance basis, without the constant when centred
    m: np.ndarray  # (N, Pz + Q) [qz, qc]: qc spans the tested part, orthogonal to the nuisance
    centre: bool


def _orth(a: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of ``a`` (rank by SVD, relative tolerance 1e-10)."""
    if a.shape[1] == 0:
        return a
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    return u[:, s > 1e-10 * max(s[0], 1e-300)]


def _plan(contrast: Contrast, X: np.ndarray, columns: Sequence[str]) -> _Plan:
    check_contrast(contrast, X, columns)
    xs, transform = standardise_design(X, columns)
    cs = contrast.matrix @ transform
    z = xs @ scipy.linalg.null_space(cs)  # reduced (null-hypothesis) model
    centre = ones_in_span(z) if z.shape[1] else False
    if not centre and ones_in_span(xs):
        raise DesignError(
            f"contrast {contrast.name!r} tests the mean (the constant is not in its nuisance "
            "part); permuting subjects cannot test it (a sign-flipping test is needed)"
        )
    if centre:
        z = z - z.mean(0)
    qz = _orth(z)
    tested = xs @ np.linalg.solve(xs.T @ xs, cs.T)  # (N, Q): X A^-1 c'^T, orthogonal to z
    tested = tested - qz @ (qz.T @ tested)  # guard against rounding
    if centre:
        tested = tested - tested.mean(0)
    if contrast.kind == "t":
        qc = tested / np.linalg.norm(tested)  # keeps the sign: u = c beta / sqrt(c A^-1 c^T)
    else:
        qc = _orth(tested)
    return _Plan(contrast.name, contrast.kind, contrast.matrix.shape[0], qz, np.hstack([qz, qc]), centre)


def transformed_statistic(plan: _Plan, zj: torch.Tensor, resid_ss: torch.Tensor, df2: float) -> torch.Tensor:
    """t or F of J transformed copies from their projections ``zj`` (J, M, V) onto ``plan.m``.

    The first ``pz`` projections span the nuisance, the rest the tested part; ``resid_ss`` (V,)
    is ``|R_z y|^2``. Returns (J, V) float32, 0 where the residual variance is 0.
    """
    pz = plan.qz.shape[1]
    # |z_j|^2 and |u_j|^2 as fused passes over (J, V) slices (cheaper than a reduction over the
    # strided middle dimension)
    tested = zj[:, pz].square()
    for j in range(pz + 1, zj.shape[1]):
        tested.addcmul_(zj[:, j], zj[:, j])
    ss = tested.clone()
    for j in range(pz):
        ss.addcmul_(zj[:, j], zj[:, j])
    sigma2 = ss.neg_().add_(resid_ss).clamp_min_(0.0).div_(df2)
    positive = sigma2 > 0
    if plan.kind == "t":
        stat = zj[:, pz] * torch.where(positive, sigma2, 1.0).rsqrt_()
    else:
        stat = tested.div_(torch.where(positive, sigma2, 1.0)).div_(plan.q)
    return torch.where(positive, stat, 0.0)


def _permutation_rows(plan: _Plan, perms: torch.Tensor) -> torch.Tensor:
    """Stack ``G_j = M^T P_j R_z`` for the permutations in ``perms`` (J, N): (J * P', N) float64.

    ``(P_j e)[i] = e[perm_j[i]]``, so ``M^T P_j = M[inv_j]^T`` with ``inv_j`` the inverse
    permutation; ``R_z = I - qz qz^T`` residualises the (centred) data on the nuisance.
    """
    m = torch.from_numpy(plan.m)
    qz = torch.from_numpy(plan.qz)
    inv = torch.argsort(perms, dim=1)
    b = m[inv].transpose(1, 2)  # (J, P', N)
    if qz.shape[1]:
        b = b - (b @ qz) @ qz.T
    return b.reshape(-1, b.shape[-1])


def distinct_permutations(n_subjects: int) -> int | None:
    """N! (the number of distinct permutations of N subjects), or None when N > 20 (too many to matter)."""
    return math.factorial(n_subjects) if n_subjects <= EXACT_MAX_SUBJECTS else None


def effective_permutations(n_subjects: int, n_permutations: int) -> tuple[int, bool]:
    """Permutations actually run for a request: ``(min(n_permutations, N!), exhaustive)``.

    ``exhaustive`` is True when the request reaches N!: then every distinct permutation is run
    once (an exact test) instead of drawing at random with repeats, as FSL randomise does.
    """
    total = distinct_permutations(n_subjects)
    if total is not None and n_permutations >= total:
        return total, True
    return n_permutations, False


def permutation_batch(n_permutations: int, widest: int, n_voxels: int, *, batch: int = 128) -> int:
    """Permutations per GEMM: ``batch``, raised up to ``BATCH_ELEMENTS / (widest x voxels)``.

    With a whole brain (``n_voxels`` beyond a few thousand) this stays ``batch``; with few
    voxels and many permutations (an exact test of 8! on a small mask) the batches grow so
    that the per-batch overhead of the small tensor operations does not dominate.
    """
    voxels = max(1, min(n_voxels, CPU_MAX_WIDTH))
    return max(1, min(n_permutations, max(batch, BATCH_ELEMENTS // (max(1, widest) * voxels))))


def all_permutations(n_subjects: int) -> torch.Tensor:
    """Every permutation of N subjects in lexicographic order (identity first), (N!, N) int64.

    Raises
    ------
    ConfigError
        For N > 20 (N! rows would not fit in any memory).
    """
    if n_subjects > EXACT_MAX_SUBJECTS:
        raise ConfigError(f"n_subjects: expected at most {EXACT_MAX_SUBJECTS} for an exhaustive permutation "
                          f"test; got {n_subjects}")
    rows = itertools.permutations(range(n_subjects))
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64,
                       count=math.factorial(n_subjects) * n_subjects)
    return torch.from_numpy(flat.reshape(-1, n_subjects))


def draw_permutations(n_subjects: int, n_permutations: int, *, seed: int = 0) -> torch.Tensor:
    """The identity followed by ``n_permutations - 1`` random permutations, (n_perm, N) int64.

    Draws are independent (with replacement), so repeats happen when N! is small; callers
    that want an exact test pass ``n_permutations >= N!`` to :func:`freedman_lane`, which
    then enumerates with :func:`all_permutations`.
    """
    gen = torch.Generator().manual_seed(int(seed))
    perms = [torch.arange(n_subjects)]
    perms += [torch.randperm(n_subjects, generator=gen) for _ in range(n_permutations - 1)]
    return torch.stack(perms)


def freedman_lane(Y: torch.Tensor, X: np.ndarray, contrasts: Sequence[Contrast], *, n_permutations: int,
                  seed: int = 0, device: str | torch.device = "cpu", memory_bytes: int | None = None,
                  progress: Callable[[int, int], None] | None = None, columns: Sequence[str] | None = None,
                  batch: int = 128) -> dict[str, PermutationResult]:
    """Family-wise error p maps by Freedman-Lane permutation and the maximum statistic.

    Parameters
    ----------
    Y : torch.Tensor, shape (N, V), float32
        Data on any device (streamed in voxel blocks to ``device``).
    X : numpy.ndarray, shape (N, P)
    contrasts : sequence of Contrast
        Each contrast's nuisance model is the part of X its null hypothesis leaves free.
    n_permutations : int
        Number of permutations including the identity (e.g. 1000 = identity + 999). When it
        reaches N! (the number of distinct permutations), all N! are run once instead (an
        exact test; a warning says so when more were asked for).
    seed : int
        Seed of the ``torch.Generator`` of the permutations (shared by all contrasts).
    device, memory_bytes, progress, columns
        As in :func:`vbmkit.stats.glm.fit`.
    batch : int
        Permutations per GEMM (raised by :func:`permutation_batch` when there are few voxels).

    Returns
    -------
    dict
        contrast name -> PermutationResult.

    Raises
    ------
    ConfigError
        For fewer than 2 permutations.
    DesignError
        Bad design or contrast, or a contrast of the mean (needs sign flipping).

    Notes
    -----
    Freedman & Lane (1983), Winkler et al. (2014): with Z the nuisance model, the data of
    permutation j are ``P_j R_z y + H_z y``; fitting X to them gives the same statistic as
    fitting X to ``e_j = P_j R_z y`` (``H_z y`` lies in the span of X and carries no tested
    effect), and ``|e_j| = |R_z y|``. In an orthonormal basis ``[Qz, Qc]`` of X (Qc spanning
    the tested part), ``z_j = [Qz, Qc]^T P_j R_z y`` is one GEMM row block per permutation,
    ``RSS_j = |R_z y|^2 - |z_j|^2``, and t = ``Qc^T e_j / sqrt(RSS_j / (N - P))``.
    ``p_FWE(v) = #{j : max_null_j >= stat_v} / n_permutations`` (identity included, so the
    smallest p is ``1 / n_permutations``).

    Exhaustive test: random draws repeat permutations when N! is small, and asking for more
    than N! cannot make p finer than ``1 / N!``. As in FSL randomise, a request of at least
    N! permutations runs each of the N! exactly once (lexicographic order, identity first), so
    ``p_FWE`` is the exact permutation p-value; ``max_null`` then has N! entries.
    """
    if n_permutations < 2:
        raise ConfigError(f"n_permutations: expected at least 2 (identity included); got {n_permutations}")
    dev, X, columns = checked_inputs(Y, X, columns, device)
    n, v = Y.shape
    df2 = float(n - X.shape[1])
    plans = [_plan(c, X, columns) for c in contrasts]
    requested = n_permutations
    n_permutations, exhaustive = effective_permutations(n, requested)
    if exhaustive:
        if requested > n_permutations:
            warnings.warn(f"--permutations {requested}: only {n_permutations} distinct permutations of {n} "
                          f"subjects; using all of them (exact test)", stacklevel=2)
        perms = all_permutations(n)
    else:
        perms = draw_permutations(n, n_permutations, seed=seed)
    widest = max(p.m.shape[1] for p in plans)
    batch = permutation_batch(n_permutations, widest, v, batch=batch)
    batches = [perms[i:i + batch] for i in range(0, n_permutations, batch)]
    stack_bytes = sum(p.m.shape[1] for p in plans) * n_permutations * n * 4
    cached = stack_bytes <= CACHE_BYTES
    lhs_cache: dict[tuple[int, int], torch.Tensor] = {}

    def lhs(ip: int, ib: int) -> torch.Tensor:
        key = (ip, ib)
        if key in lhs_cache:
            return lhs_cache[key]
        rows = _permutation_rows(plans[ip], batches[ib]).to(dev, torch.float32)
        if cached:
            lhs_cache[key] = rows
        return rows

    per_voxel = 4 * (2 * n + min(batch, n_permutations) * (widest + 4))
    width = chunk_size(per_voxel, v, memory_bytes=memory_bytes, device=dev,
                       fixed_bytes=stack_bytes if cached else min(batch, n_permutations) * widest * n * 4 * 2)
    qz_t = [torch.from_numpy(p.qz.T.copy()).to(dev, torch.float32) for p in plans]
    max_null = [torch.full((n_permutations,), -torch.inf, device=dev) for _ in plans]
    observed = [torch.empty(v, dtype=torch.float32, device=dev) for _ in plans]
    for sl, block in iter_voxel_blocks(Y, width, dev):
        mean = block.mean(0)
        for ip, plan in enumerate(plans):
            yc = block - mean if plan.centre else block
            resid_ss = (yc * yc).sum(0)
            if plan.qz.shape[1]:
                a = qz_t[ip] @ yc
                resid_ss = resid_ss - (a * a).sum(0)  # |R_z y|^2, the same for every permutation
            for ib, perm_batch in enumerate(batches):
                zj = (lhs(ip, ib) @ yc).view(perm_batch.shape[0], plan.m.shape[1], -1)
                stat = transformed_statistic(plan, zj, resid_ss, df2)
                j0 = ib * batch
                if ib == 0:
                    observed[ip][sl] = stat[0]
                max_null[ip][j0:j0 + perm_batch.shape[0]] = torch.maximum(
                    max_null[ip][j0:j0 + perm_batch.shape[0]], stat.amax(1))
        if progress is not None:
            progress(sl.stop, v)
    result = {}
    for ip, plan in enumerate(plans):
        null = max_null[ip].to("cpu", torch.float64)
        stat = observed[ip].cpu()
        ordered = torch.sort(null).values
        at_least = n_permutations - torch.searchsorted(ordered, stat.double(), side="left")
        result[plan.name] = PermutationResult(p_fwe=at_least.double() / n_permutations, max_null=null, stat=stat)
    return result
