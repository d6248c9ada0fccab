"""Conversions between statistics and p values, and FDR q values.

The p values are computed in float64 with ``scipy.special`` (``stdtr``, ``fdtrc``), which
stay accurate far in the tails (p of 1e-300 does not underflow to 0 at t = 40, as
``1 - cdf`` would). Inputs may live on any device; outputs come back on the same device.
"""

from __future__ import annotations

import numpy as np
import scipy.special
import scipy.stats
import torch
from statsmodels.stats.multitest import multipletests

from vbmkit.errors import ConfigError


def _check_df(name: str, value: float) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: expected a positive number of degrees of freedom; got {value!r}")


def t_to_p(t: torch.Tensor, df: float) -> torch.Tensor:
    """One-sided upper-tail p value of a t statistic, ``P(T >= t)``.

    Parameters
    ----------
    t : torch.Tensor
        t statistics, any shape and device.
    df : float
        Residual degrees of freedom (N - P for the full-sample fit).

    Returns
    -------
    torch.Tensor
        float64, same shape and device. NaN stays NaN.

    Notes
    -----
    SPM convention: a t-contrast tests the positive direction, so ``-age`` tests a negative
    age effect. ``P(T >= t) = stdtr(df, -t)``.
    """
    _check_df("df", df)
    values = t.detach().to("cpu", torch.float64).numpy()
    return torch.from_numpy(scipy.special.stdtr(df, -values)).to(t.device)


def f_to_p(f: torch.Tensor, df1: float, df2: float) -> torch.Tensor:
    """Upper-tail p value of an F statistic, ``P(F >= f)``, float64, same shape and device."""
    _check_df("df1", df1)
    _check_df("df2", df2)
    values = f.detach().to("cpu", torch.float64).numpy()
    return torch.from_numpy(scipy.special.fdtrc(df1, df2, values)).to(f.device)


def p_to_t(p: float, df: float) -> float:
    """t threshold with one-sided upper-tail probability ``p`` (e.g. p=0.001, df=100 -> 3.17)."""
    _check_df("df", df)
    if not 0 < p < 1:
        raise ConfigError(f"p: expected a probability in (0, 1); got {p!r}")
    return float(scipy.stats.t.isf(p, df))


def p_to_f(p: float, df1: float, df2: float) -> float:
    """F threshold with upper-tail probability ``p``."""
    _check_df("df1", df1)
    _check_df("df2", df2)
    if not 0 < p < 1:
        raise ConfigError(f"p: expected a probability in (0, 1); got {p!r}")
    return float(scipy.stats.f.isf(p, df1, df2))


def fdr_q(p: torch.Tensor | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q values (``statsmodels.stats.multitest.multipletests``, ``fdr_bh``).

    Parameters
    ----------
    p : torch.Tensor or numpy.ndarray, shape (V,)
        Uncorrected p values; NaN entries are ignored and stay NaN.

    Returns
    -------
    numpy.ndarray, shape (V,), float64
        q values: the smallest FDR level at which each voxel is declared significant.
    """
    if isinstance(p, torch.Tensor):
        p = p.detach().to("cpu", torch.float64).numpy()
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return q
