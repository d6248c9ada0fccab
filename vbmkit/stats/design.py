"""Design matrices and contrasts: validation and the standardising transform.

Pure numpy code. The design matrix ``X`` (N subjects x P columns) comes from the workflow
(e.g. a formulaic formula); this module checks that it can be fitted, that a contrast is
estimable, and provides the column transform that the GLM engine uses for precision.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vbmkit.errors import DesignError

#: Relative singular-value tolerance (on RMS-scaled columns) below which a design is rank deficient.
RANK_TOL = 1e-10
#: Relative tolerance of the row-space test of a contrast.
ESTIMABLE_TOL = 1e-8
_INTERCEPT_NAMES = ("intercept", "const", "constant", "(intercept)")


@dataclass(frozen=True, eq=False)
class Contrast:
    """A named linear contrast of the GLM parameters.

    Parameters
    ----------
    name : str
        Used for output folders and in messages.
    matrix : numpy.ndarray, shape (Q, P) or (P,)
        Contrast weights, one row per tested combination, stored as float64 (Q, P).
    kind : {"t", "F"}
        ``"t"`` needs Q == 1 and tests ``c @ beta > 0`` (one-sided, SPM convention);
        ``"F"`` tests ``C @ beta == 0`` jointly over its Q rows.
    """

    name: str
    matrix: np.ndarray
    kind: Literal["t", "F"] = "t"

    def __post_init__(self) -> None:
        matrix = np.atleast_2d(np.asarray(self.matrix, dtype=np.float64))
        if matrix.ndim != 2:
            raise DesignError(
                f"contrast {self.name!r}: expected a vector or a (Q, P) matrix; got shape {matrix.shape}"
            )
        if self.kind not in ("t", "F"):
            raise DesignError(f"contrast {self.name!r}: kind must be 't' or 'F'; got {self.kind!r}")
        if self.kind == "t" and matrix.shape[0] != 1:
            raise DesignError(
                f"contrast {self.name!r}: a t-contrast has one row; got {matrix.shape[0]} rows "
                "(use kind='F' to test several rows jointly)"
            )
        object.__setattr__(self, "matrix", matrix)


def _column_scale(X: np.ndarray) -> np.ndarray:
    """RMS of each column (1 for an all-zero column), so rank tests ignore units."""
    rms = np.sqrt(np.mean(X * X, axis=0))
    return np.where(rms > 0, rms, 1.0)


def describe_null(vector: np.ndarray, columns: Sequence[str]) -> str:
    """Render a null-space vector as ``1*a - 1*b`` over the columns that take part in it."""
    vector = vector / np.abs(vector).max()
    terms = [f"{w:+.3g}*{columns[j]}" for j, w in enumerate(vector) if abs(w) > 1e-6]
    return " ".join(terms).lstrip("+")


def intercept_index(X: np.ndarray, columns: Sequence[str] | None = None, *, strict: bool = False) -> int | None:
    """Index of the intercept column.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, P)
    columns : sequence of str, optional
    strict : bool
        Only accept a constant column named like an intercept (``Intercept``, ``const``) or a
        column of ones; otherwise any constant non-zero column will do.

    Returns
    -------
    int or None
    """
    X = np.asarray(X, dtype=np.float64)
    constant = [j for j in range(X.shape[1]) if np.all(X[:, j] == X[0, j]) and X[0, j] != 0]
    if columns is not None:
        for j in constant:
            if str(columns[j]).strip().lower() in _INTERCEPT_NAMES:
                return j
    for j in constant:
        if X[0, j] == 1:
            return j
    return constant[0] if constant and not strict else None


def check_design(X: np.ndarray, columns: Sequence[str]) -> None:
    """Check that the design matrix can be fitted by ordinary least squares.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, P)
        Design matrix, one row per subject.
    columns : sequence of str, length P
        Column names, used in messages.

    Raises
    ------
    DesignError
        Wrong shape, NaN/Inf entries, fewer subjects than columns + 2, or a rank-deficient
        matrix (the message names the linearly dependent columns).

    Warns
    -----
    UserWarning
        For a constant column other than the intercept.

    Notes
    -----
    The rank is judged on RMS-scaled columns (so units do not matter): the design is rank
    deficient when its smallest singular value is below ``RANK_TOL`` times its largest. The
    right singular vector of the smallest singular value is a combination of columns that
    vanishes; the columns with non-zero weight in it are named.
    """
    X = np.asarray(X, dtype=np.float64)
    columns = list(columns)
    if X.ndim != 2:
        raise DesignError(f"design matrix: expected 2-D (subjects x columns); got shape {X.shape}")
    n, p = X.shape
    if len(columns) != p:
        raise DesignError(
            f"design matrix: {p} columns but {len(columns)} column names were given ({columns})"
        )
    bad = ~np.isfinite(X)
    if bad.any():
        j = int(np.nonzero(bad.any(axis=0))[0][0])
        rows = np.nonzero(bad[:, j])[0][:5].tolist()
        raise DesignError(
            f"design matrix: column {columns[j]!r} holds NaN/Inf (rows {rows}); expected finite values"
        )
    if n < p + 2:
        raise DesignError(
            f"design matrix: fewer subjects than columns + 2 (got N={n} subjects, P={p} columns "
            f"{columns}); the error variance needs at least 2 residual degrees of freedom"
        )
    icpt = intercept_index(X, columns, strict=True)
    for j in range(p):
        if j != icpt and np.all(X[:, j] == X[0, j]):
            warnings.warn(
                f"design matrix: column {columns[j]!r} is constant ({X[0, j]:g}) for all "
                f"{n} subjects; it cannot be separated from the intercept",
                UserWarning,
                stacklevel=2,
            )
    scaled = X / _column_scale(X)
    _, s, vt = np.linalg.svd(scaled, full_matrices=False)
    if s[-1] <= RANK_TOL * s[0]:
        rank = int(np.sum(s > RANK_TOL * s[0]))
        raise DesignError(
            f"design matrix is rank deficient (rank {rank} < {p} columns): columns are linearly "
            f"dependent: {describe_null(vt[-1] / _column_scale(X), columns)} = 0"
        )


def check_contrast(contrast: Contrast, X: np.ndarray, columns: Sequence[str]) -> None:
    """Check that a contrast has the design's width and is estimable.

    Parameters
    ----------
    contrast : Contrast
    X : numpy.ndarray, shape (N, P)
    columns : sequence of str, length P

    Raises
    ------
    DesignError
        Wrong width, an all-zero row, linearly dependent rows (F), or rows outside the row
        space of ``X`` (not estimable).

    Notes
    -----
    ``c`` is estimable when ``c = c X^+ X`` (it lies in the row space of X); for a full-rank
    design every contrast is estimable, so this mostly catches width and zero-row mistakes.
    """
    X = np.asarray(X, dtype=np.float64)
    columns = list(columns)
    c = contrast.matrix
    if c.shape[1] != X.shape[1]:
        raise DesignError(
            f"contrast {contrast.name!r}: has {c.shape[1]} columns; expected {X.shape[1]} "
            f"(one per design column: {columns})"
        )
    norms = np.linalg.norm(c, axis=1)
    if np.any(norms == 0):
        raise DesignError(f"contrast {contrast.name!r}: a row is all zeros; expected non-zero weights")
    if c.shape[0] > 1 and np.linalg.matrix_rank(c / norms[:, None], tol=1e-10) < c.shape[0]:
        raise DesignError(
            f"contrast {contrast.name!r}: its {c.shape[0]} rows are linearly dependent; "
            "expected independent rows for an F-contrast"
        )
    projected = c @ np.linalg.pinv(X) @ X
    err = np.linalg.norm(c - projected, axis=1) / norms
    if np.any(err > ESTIMABLE_TOL):
        raise DesignError(
            f"contrast {contrast.name!r} is not estimable: it lies outside the row space of the "
            f"design (columns {columns}); relative residual {err.max():.3g}"
        )


def standardise_design(X: np.ndarray, columns: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale the non-intercept columns, returning the transform.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, P)
    columns : sequence of str, optional
        Only used to pick the intercept column by name.

    Returns
    -------
    Xs : numpy.ndarray, shape (N, P), float64
        ``Xs = X @ T``: non-intercept columns with mean 0 and standard deviation 1 (when the
        design has an intercept column), the intercept column equal to 1; without an
        intercept every column is divided by its RMS.
    T : numpy.ndarray, shape (P, P), float64
        Invertible column transform.

    Notes
    -----
    With ``Xs = X T`` the parameters are ``beta = T beta_s`` and a contrast ``c`` of the
    original parameters is ``c T`` of the standardised ones, so ``c beta = (c T) beta_s``:
    statistics are unchanged and effects stay in the original units.
    """
    X = np.asarray(X, dtype=np.float64)
    p = X.shape[1]
    icpt = intercept_index(X, columns)
    T = np.eye(p)
    if icpt is None:
        T = np.diag(1.0 / _column_scale(X))
    else:
        value = X[0, icpt]
        T[icpt, icpt] = 1.0 / value
        for j in range(p):
            if j == icpt:
                continue
            mean, sd = X[:, j].mean(), X[:, j].std()
            sd = sd if sd > 0 else 1.0
            T[j, j] = 1.0 / sd
            T[icpt, j] = -mean / (sd * value)
    return X @ T, T


def ones_in_span(X: np.ndarray, *, tol: float = 1e-8) -> bool:
    """Whether the constant vector lies in the column space of ``X`` (so centring Y is exact)."""
    X = np.asarray(X, dtype=np.float64)
    ones = np.ones(X.shape[0])
    coef, *_ = np.linalg.lstsq(X, ones, rcond=None)
    return bool(np.linalg.norm(X @ coef - ones) <= tol * np.sqrt(X.shape[0]))
