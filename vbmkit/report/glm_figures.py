"""Figures of a GLM run: the design matrix and a glass brain per contrast (Agg backend)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vbmkit.io.atomic import atomic_path


def _agg() -> None:
    import matplotlib

    # Figures are files, never windows: a headless server has no display.
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)


def plot_design(X: np.ndarray, columns: Sequence[str], path: str | os.PathLike, *,
                title: str | None = None) -> Path:
    """Save the design matrix as an image: one column per regressor, one row per subject.

    Parameters
    ----------
    X : (N, P) ndarray
        Design matrix.
    columns : sequence of str
        P column names, written under the columns.
    path : path
        PNG file written atomically.

    Notes
    -----
    Each column is divided by its largest absolute value so that columns of different units
    share one grey scale (-1 black, +1 white), as SPM's design review does.
    """
    _agg()
    from matplotlib.figure import Figure

    X = np.asarray(X, dtype=np.float64)
    scale = np.abs(X).max(axis=0)
    shown = X / np.where(scale > 0, scale, 1.0)
    n, p = X.shape
    fig = Figure(figsize=(max(3.0, 0.6 * p + 1.5), 6.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, aspect="auto", cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(range(p))
    ax.set_xticklabels(list(columns), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"subject (N = {n})")
    ax.set_title(title if title is not None else "design matrix (columns scaled to max |x| = 1)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_glass_brain(stat: np.ndarray, affine: np.ndarray, path: str | os.PathLike, *, threshold: float,
                     title: str, two_sided: bool = True) -> Path:
    """Save a glass-brain view (nilearn ``plot_glass_brain``) of a statistic map.

    Parameters
    ----------
    stat : (X, Y, Z) ndarray
        t or F map (0 outside the mask).
    affine : (4, 4) ndarray
        Voxel -> mm of ``stat``.
    threshold : float
        Values with ``|stat| < threshold`` are not drawn.
    two_sided : bool
        True for t maps (positive red, negative blue), False for F maps.

    Notes
    -----
    When nilearn cannot draw the map (an unusual grid, an empty map) a plain maximum-intensity
    projection with matplotlib is written instead, with a warning, so that a run never fails
    on a figure.
    """
    _agg()
    import nibabel as nib

    data = np.nan_to_num(np.asarray(stat, dtype=np.float32))
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    vmax = float(np.abs(data).max()) or 1.0
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 3.2), dpi=100)  # nilearn needs a pyplot-managed figure
    try:
        from nilearn import plotting

        kwargs = {"vmin": -vmax, "vmax": vmax, "cmap": "cold_hot"} if two_sided else \
            {"vmin": 0.0, "vmax": vmax, "cmap": "hot"}
        with warnings.catch_warnings():
            # nilearn warns "empty mask" when nothing passes the threshold: a valid, empty figure
            warnings.filterwarnings("ignore", message=".*empty mask.*")
            plotting.plot_glass_brain(img, threshold=float(threshold), plot_abs=not two_sided, colorbar=True,
                                      display_mode="lyrz", figure=fig, title=title, **kwargs)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    except Exception as exc:  # nilearn's plotting has many failure modes on odd grids
        warnings.warn(f"glass brain {path}: nilearn could not draw it ({type(exc).__name__}: {exc}); "
                      "writing maximum-intensity projections instead", stacklevel=2)
        _plot_projections(data, path, threshold=threshold, title=title)
    finally:
        plt.close(fig)
    return Path(path)


def _plot_projections(data: np.ndarray, path: str | os.PathLike, *, threshold: float, title: str) -> None:
    from matplotlib.figure import Figure

    signed = np.where(np.abs(data) >= threshold, data, 0.0)
    fig = Figure(figsize=(10, 3.2), dpi=100)
    vmax = float(np.abs(signed).max()) or 1.0
    for k, axis in enumerate((0, 1, 2)):
        ax = fig.add_subplot(1, 3, k + 1)
        idx = np.abs(signed).argmax(axis=axis)
        proj = np.take_along_axis(signed, np.expand_dims(idx, axis), axis=axis).squeeze(axis)
        ax.imshow(np.rot90(proj), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
