"""Voxel-wise ordinary least squares for many weightings of the subjects at once.

One engine serves the full-sample fit (one weighting: all ones) and the K subsample fits
(K 0/1 weightings, :mod:`vbmkit.stats.subsample`): the data matrix is read once, a block of
voxels at a time, and every fit of every contrast comes out of one GEMM per block.
The algebra is written up in ``docs/algorithms_glm.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vbmkit.device import resolve_device
from vbmkit.errors import DesignError
from vbmkit.stats.chunking import chunk_size, iter_voxel_blocks
from vbmkit.stats.design import (
    Contrast,
    check_contrast,
    check_design,
    describe_null,
    ones_in_span,
    standardise_design,
)
from vbmkit.stats.inference import f_to_p, t_to_p

#: Relative eigenvalue tolerance of X^T W X below which a weighted design is singular.
EIG_TOL = 1e-13


@dataclass(frozen=True)
class ContrastMaps:
    """Full-sample maps of one contrast (all tensors on the CPU, shape (V,)).

    Attributes
    ----------
    kind : {"t", "F"}
    stat : torch.Tensor, float32
        t or F statistic.
    df : tuple of float
        ``(df1, df2)``: ``(1, N - P)`` for t, ``(Q, N - P)`` for F.
    p : torch.Tensor, float64
        Uncorrected p: one-sided upper tail for t (SPM convention), upper tail for F.
    effect : torch.Tensor, float32
        t: ``c @ beta`` in units of Y per unit of the contrast. F: ``sqrt(ESS / N)``, the
        root mean square of the fitted values the contrast explains (units of Y).
    std_effect : torch.Tensor, float32
        t: partial correlation ``r = t / sqrt(t^2 + df2)``; F: partial eta squared
        ``F df1 / (F df1 + df2)``.
    """

    kind: str
    stat: torch.Tensor
    df: tuple[float, float]
    p: torch.Tensor
    effect: torch.Tensor
    std_effect: torch.Tensor


@dataclass(frozen=True)
class _Head:
    """Per-contrast matrices of a weighted design (float32 on the device)."""

    name: str
    kind: str
    q: int
    e: torch.Tensor  # (B, Q, P) whitened contrast rows: u = e @ z, stat numerator
    e_mu: torch.Tensor | None  # (B, Q) correction of u for the removed voxel mean
    d: torch.Tensor | None  # (B, Q, P) effect rows: c beta = d @ z
    d_mu: torch.Tensor | None  # (B, Q)


@dataclass(frozen=True)
class WeightedDesign:
    """A design prepared for B weightings of the subjects (see :func:`prepare_weighted`).

    Attributes
    ----------
    g : torch.Tensor, shape (B * P, N), float32
        Rows ``L_b^-1 Xs^T diag(w_b)``: the orthonormal basis of each weighted design.
    w : torch.Tensor or None, shape (B, N), float32
        Weights; None when B == 1 and all weights are one.
    n : numpy.ndarray, shape (B,)
        Subjects in each weighting.
    df2 : numpy.ndarray, shape (B,)
        Residual degrees of freedom ``n_b - P``.
    centre : bool
        Whether Y is centred per voxel (exact when the constant is in the column space).
    heads : tuple of _Head
    """

    g: torch.Tensor
    w: torch.Tensor | None
    n: np.ndarray
    df2: np.ndarray
    centre: bool
    heads: tuple[_Head, ...]
    p: int
    df2_t: torch.Tensor  # (B, 1) float32 on the device
    n_t: torch.Tensor  # (B, 1) float32 on the device

    @property
    def b(self) -> int:
        return int(self.n.shape[0])


def _default_columns(p: int) -> list[str]:
    return [f"x{j}" for j in range(p)]


def _tensor(a: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(a).to(device=device, dtype=torch.float32).contiguous()


def prepare_weighted(X: np.ndarray, weights: np.ndarray | torch.Tensor, contrasts: Sequence[Contrast], *,
                     device: torch.device, columns: Sequence[str] | None = None,
                     effects: bool = False, label: str = "weighting") -> WeightedDesign:
    """Precompute, in float64, everything of B weighted fits that does not depend on Y.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, P)
        Design matrix (checked by the caller with :func:`check_design`).
    weights : numpy.ndarray or torch.Tensor, shape (B, N)
        Non-negative subject weights per fit (0/1 for subsamples).
    contrasts : sequence of Contrast
    device : torch.device
    columns : sequence of str, optional
        Column names for messages.
    effects : bool
        Also prepare the effect rows ``c beta``.
    label : str
        Name of one weighting in messages (``"subsample"``).

    Raises
    ------
    DesignError
        When a weighting leaves the design rank deficient (e.g. a group absent from a draw).

    Notes
    -----
    With ``Xs = X T`` (standardised columns) and ``A_b = Xs^T W_b Xs = L_b L_b^T``, the rows
    ``G_b = L_b^-1 Xs^T W_b`` give ``z_b = G_b y``, the coordinates of y's fit in an
    orthonormal basis, so ``RSS_b = y^T W_b y - |z_b|^2``. For a contrast ``c' = c T``,
    ``c beta = D_b z_b`` with ``D_b = c' L_b^-T``; whitening by ``D_b D_b^T = M M^T`` gives
    ``u = E_b z_b``, ``E_b = M^-1 D_b``: t = u / sigma, F = |u|^2 / (Q sigma^2).
    """
    X = np.asarray(X, dtype=np.float64)
    n_subjects, p = X.shape
    columns = list(columns) if columns is not None else _default_columns(p)
    w64 = torch.as_tensor(weights).detach().to("cpu", torch.float64)
    if w64.ndim != 2 or w64.shape[1] != n_subjects:
        raise DesignError(f"weights: expected shape (B, {n_subjects}); got {tuple(w64.shape)}")
    xs_np, transform = standardise_design(X, columns)
    xs = torch.from_numpy(xs_np)
    a = torch.einsum("bn,np,nq->bpq", w64, xs, xs)
    n_b = w64.sum(1).numpy()
    scale = torch.from_numpy(n_b).clamp_min(1.0)[:, None, None]
    evals, evecs = torch.linalg.eigh(a / scale)
    few = np.nonzero(n_b < p + 2)[0]
    if few.size:
        raise DesignError(
            f"{label} {int(few[0])}: has {n_b[few[0]]:g} subjects; expected at least P + 2 = {p + 2} "
            f"for {p} design columns (raise the fraction or the number of subjects)"
        )
    # eigenvalues of X^T W X are squared singular values; float64 eigh resolves ~1e-16 of the
    # largest, so a draw whose smallest is below 1e-13 of it is treated as singular
    bad = evals[:, 0] <= EIG_TOL * evals[:, -1].clamp_min(1e-300)
    if bool(bad.any()):
        b = int(torch.nonzero(bad)[0])
        null = transform @ evecs[b, :, 0].numpy()
        raise DesignError(
            f"{label} {b}: the design restricted to its {int(n_b[b])} subjects is rank deficient "
            f"(dependent columns: {describe_null(null, columns)} = 0); expected every {label} to "
            "keep each level of every factor (stratify, or raise the fraction)"
        )
    chol = torch.linalg.cholesky(a)
    g = torch.linalg.solve_triangular(chol, xs.T[None] * w64[:, None, :], upper=False)
    centre = ones_in_span(X)
    g_one = g.sum(2)  # (B, P): G_b applied to the constant vector, for the mean correction
    heads = []
    for contrast in contrasts:
        check_contrast(contrast, X, columns)
        cs = torch.from_numpy(contrast.matrix @ transform)  # (Q, P)
        d = torch.linalg.solve_triangular(chol, cs.T.expand(chol.shape[0], -1, -1), upper=False)
        d = d.transpose(1, 2)  # (B, Q, P) = c' L^-T
        m = torch.linalg.cholesky(d @ d.transpose(1, 2))
        e = torch.linalg.solve_triangular(m, d, upper=False)
        e_mu = (e @ g_one[:, :, None])[..., 0]
        d_mu = (d @ g_one[:, :, None])[..., 0]
        uses_mean = centre and bool((e_mu.abs() > 1e-9 * e.abs().amax()).any())
        heads.append(_Head(
            name=contrast.name, kind=contrast.kind, q=contrast.matrix.shape[0], e=_tensor(e, device),
            e_mu=_tensor(e_mu, device) if uses_mean else None,
            d=_tensor(d, device) if effects else None,
            d_mu=_tensor(d_mu, device) if effects and uses_mean else None,
        ))
    all_ones = w64.shape[0] == 1 and bool((w64 == 1).all())
    return WeightedDesign(
        g=_tensor(g.reshape(-1, n_subjects), device), w=None if all_ones else _tensor(w64, device),
        n=n_b, df2=n_b - p, centre=centre, heads=tuple(heads), p=p,
        df2_t=_tensor((n_b - p)[:, None], device), n_t=_tensor(n_b[:, None], device),
    )


def block_bytes_per_voxel(design: WeightedDesign, n_subjects: int, *, effects: bool = False) -> int:
    """Bytes of temporaries per voxel in :func:`block_statistics`."""
    b, p = design.b, design.p
    per_head = sum(b * (2 * h.q + 3) + (b * (h.q + 1) if effects else 0) for h in design.heads)
    return 4 * (2 * n_subjects + b * p + 4 * b + per_head)


def block_statistics(design: WeightedDesign, block: torch.Tensor, *, effects: bool = False
                     ) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """t or F statistics (and effects) of every weighting and contrast for one voxel block.

    Parameters
    ----------
    design : WeightedDesign
    block : torch.Tensor, shape (N, Vb), float32
        Data of Vb voxels, on the design's device; not modified.
    effects : bool
        Also return ``c beta`` (t) or ``sqrt(ESS / n)`` (F); needs ``effects=True`` in
        :func:`prepare_weighted` for t.

    Returns
    -------
    dict
        contrast name -> (stat (B, Vb) float32, effect (B, Vb) float32 or None).
        Voxels whose residual variance is 0 (e.g. constant) get stat 0.
    """
    mu = block.mean(0) if design.centre else None
    yc = block - mu if mu is not None else block.clone()
    z = (design.g @ yc).view(design.b, design.p, -1)  # the one big GEMM
    yc.square_()
    yy = yc.sum(0, keepdim=True) if design.w is None else design.w @ yc
    del yc
    # sums over the P coordinates as P fused passes over (B, Vb) slices: cheaper than a
    # reduction over the strided middle dimension
    rss = yy.addcmul_(z[:, 0], z[:, 0], value=-1.0)
    for j in range(1, design.p):
        rss.addcmul_(z[:, j], z[:, j], value=-1.0)
    sigma2 = rss.clamp_min_(0.0).div_(design.df2_t)
    positive = sigma2 > 0
    inv_sigma = torch.where(positive, sigma2, 1.0).rsqrt_()
    out = {}
    for head in design.heads:
        u = _combine(head.e, z)  # (B, Q, Vb)
        if head.e_mu is not None:
            u += head.e_mu[:, :, None] * mu
        if head.kind == "t":
            stat = u[:, 0].mul_(inv_sigma)
        else:
            stat = (u * u).sum(1).mul_(inv_sigma * inv_sigma).div_(head.q)
        stat = torch.where(positive, stat, 0.0)
        effect = None
        if effects:
            if head.kind == "t":
                effect = _combine(head.d, z)[:, 0]
                if head.d_mu is not None:
                    effect += head.d_mu[:, 0, None] * mu
            else:
                effect = ((u * u).sum(1) / design.n_t).sqrt_()
        out[head.name] = (stat, effect)
    return out


def _combine(rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``rows @ z`` per weighting: (B, Q, P) x (B, P, Vb) -> (B, Q, Vb) as P fused passes.

    For small P this beats ``torch.bmm`` (a batch of tiny matrix products).
    """
    out = rows[:, :, 0, None] * z[:, None, 0]
    for j in range(1, z.shape[1]):
        out.addcmul_(rows[:, :, j, None], z[:, None, j])
    return out


def fit(Y: torch.Tensor, X: np.ndarray, contrasts: Sequence[Contrast], *, device: str | torch.device = "cpu",
        memory_bytes: int | None = None, progress: Callable[[int, int], None] | None = None,
        columns: Sequence[str] | None = None) -> dict[str, ContrastMaps]:
    """Fit the voxel-wise GLM on all subjects and compute each contrast's maps.

    Parameters
    ----------
    Y : torch.Tensor, shape (N, V), float32
        Data, one row per subject (e.g. masked GM maps), on any device; streamed in voxel
        blocks to ``device``.
    X : numpy.ndarray, shape (N, P)
        Design matrix.
    contrasts : sequence of Contrast
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"auto"``.
    memory_bytes : int, optional
        Working-memory budget of one voxel block (default: see
        :func:`vbmkit.stats.chunking.default_memory_bytes`).
    progress : callable(done, total), optional
        Called after each block with the number of voxels done and the total.
    columns : sequence of str, optional
        Design column names for messages.

    Returns
    -------
    dict
        contrast name -> ContrastMaps (tensors on the CPU).

    Raises
    ------
    DesignError
        Bad design or contrast (see :func:`check_design`, :func:`check_contrast`), or a Y
        whose number of rows differs from X's.
    """
    dev, X, columns = checked_inputs(Y, X, columns, device)
    n, v = Y.shape
    design = prepare_weighted(X, np.ones((1, n)), contrasts, device=dev, columns=columns, effects=True)
    width = chunk_size(block_bytes_per_voxel(design, n, effects=True), v, memory_bytes=memory_bytes, device=dev,
                       fixed_bytes=int(design.g.numel()) * 4)
    stats = {h.name: torch.empty(v, dtype=torch.float32, device=dev) for h in design.heads}
    effects = {h.name: torch.empty(v, dtype=torch.float32, device=dev) for h in design.heads}
    for sl, block in iter_voxel_blocks(Y, width, dev):
        for name, (stat, effect) in block_statistics(design, block, effects=True).items():
            stats[name][sl] = stat[0]
            effects[name][sl] = effect[0]
        if progress is not None:
            progress(sl.stop, v)
    df2 = float(design.df2[0])
    result = {}
    for head in design.heads:
        stat = stats[head.name].cpu()
        if head.kind == "t":
            p = t_to_p(stat, df2)
            std = stat / torch.sqrt(stat * stat + df2)
        else:
            p = f_to_p(stat, head.q, df2)
            std = stat * head.q / (stat * head.q + df2)
        result[head.name] = ContrastMaps(kind=head.kind, stat=stat, df=(float(head.q), df2), p=p,
                                         effect=effects[head.name].cpu(), std_effect=std)
    return result


def checked_inputs(Y: torch.Tensor, X: np.ndarray, columns: Sequence[str] | None,
                   device: str | torch.device) -> tuple[torch.device, np.ndarray, list[str]]:
    """The preamble of every fitting entry point: the device, X as float64, column names, checks.

    Returns
    -------
    (device, X, columns)
        The resolved device, ``X`` as a float64 array and the column names (``x0, x1, ...`` when
        ``columns`` is None), after :func:`_check_inputs`.
    """
    dev = resolve_device(device)
    X = np.asarray(X, dtype=np.float64)
    columns = list(columns) if columns is not None else _default_columns(X.shape[1])
    _check_inputs(Y, X, columns)
    return dev, X, columns


def _check_inputs(Y: torch.Tensor, X: np.ndarray, columns: Sequence[str]) -> None:
    """Shape checks shared by the fitting entry points, then :func:`check_design`."""
    if not isinstance(Y, torch.Tensor) or Y.ndim != 2:
        raise DesignError(f"Y: expected a 2-D torch tensor (subjects x voxels); got {type(Y).__name__} "
                          f"of shape {tuple(getattr(Y, 'shape', ()))}")
    if X.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise DesignError(f"Y has {Y.shape[0]} rows (subjects) but the design matrix has shape "
                          f"{X.shape}; expected one design row per subject")
    check_design(X, columns)
