"""Figures of a GLM run: the design matrix (with contrast weights), glass brains and slices (Agg backend)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
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
    fig = _projection_figure(data, threshold=threshold, title=title, figsize=(10, 3.2), dpi=100)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def design_contrast_figure(X: np.ndarray, columns: Sequence[str], contrasts: Mapping[str, np.ndarray]):
    """The design matrix with each contrast's weights drawn above it, as SPM's design review.

    Parameters
    ----------
    X : (N, P) ndarray
        Design matrix.
    columns : sequence of str
        P column names.
    contrasts : mapping of str to (Q, P) or (P,) array
        Contrast name -> weights (one row for t, Q rows for F).

    Returns
    -------
    matplotlib.figure.Figure
        One strip per contrast (weights in a red-blue scale, printed in the cells when P <= 12)
        above the design matrix (columns scaled to max |x| = 1).
    """
    _agg()
    from matplotlib.figure import Figure

    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    mats = {k: np.atleast_2d(np.asarray(w, dtype=np.float64)) for k, w in contrasts.items()}
    for name, w in mats.items():
        if w.shape[1] != p:
            raise ValueError(f"contrast {name!r}: expected {p} weights (the design columns); got {w.shape[1]}")
    heights = [0.35 * w.shape[0] + 0.15 for w in mats.values()] + [4.0]
    fig = Figure(figsize=(max(4.0, 0.7 * p + 2.0), sum(heights) + 1.6), dpi=90)
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.25)
    for k, (name, w) in enumerate(mats.items()):
        ax = fig.add_subplot(grid[k])
        vmax = float(np.abs(w).max()) or 1.0
        ax.imshow(w, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        if p <= 12:
            for (r, c), value in np.ndenumerate(w):
                ax.text(c, r, f"{value:g}", ha="center", va="center", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    ax = fig.add_subplot(grid[-1])
    scale = np.abs(X).max(axis=0)
    ax.imshow(X / np.where(scale > 0, scale, 1.0), aspect="auto", cmap="gray", vmin=-1, vmax=1,
              interpolation="nearest")
    ax.set_xticks(range(p))
    ax.set_xticklabels(list(columns), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"subject (N = {n})")
    fig.suptitle("contrast weights (top) and design matrix (columns scaled to max |x| = 1)", fontsize=9)
    return fig


def tail_figures(stat: np.ndarray, affine: np.ndarray, *, sign: int, title: str, bg_img=None) -> tuple:
    """Glass brain and axial slices of one tail of an already thresholded statistic map.

    Parameters
    ----------
    stat : (X, Y, Z) ndarray
        Statistic with 0 wherever a voxel is not shown (outside the mask, below the threshold,
        not significant).
    affine : (4, 4) ndarray
        Voxel -> mm.
    sign : {1, -1}
        The tail drawn: positive values only (1, red to yellow) or negative values only (-1, green
        to blue); the other sign is removed, so a one-sided test never shows the untested tail.
    title : str
    bg_img : nibabel image or path, optional
        Background of the slices (default nilearn's MNI152).

    Returns
    -------
    (glass, slices) : matplotlib figures (pyplot-managed; :func:`vbmkit.report.html.figure_to_data_uri`
        closes them). A maximum-intensity projection stands in, with a warning, when nilearn
        cannot draw the map.
    """
    _agg()
    import matplotlib.pyplot as plt
    import nibabel as nib

    if sign not in (1, -1):
        raise ValueError(f"sign: expected 1 or -1; got {sign!r}")
    data = np.nan_to_num(np.asarray(stat, dtype=np.float32))
    data = np.where(sign * data > 0, data, 0.0).astype(np.float32)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    shown = np.abs(data[data != 0])
    vmax = float(shown.max()) if shown.size else 1.0
    threshold = float(shown.min()) * 0.999 if shown.size else 1e-6
    figs = []
    for kind in ("glass", "slices"):
        fig = plt.figure(figsize=(10, 3.0), dpi=80)
        try:
            from nilearn import plotting

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # empty maps, non-MNI grids: valid figures
                # one-sided colour scales: red-yellow for the positive tail, green-blue for the negative one
                scale = {"cmap": "autumn" if sign > 0 else "winter", "symmetric_cbar": False,
                         "vmin": threshold if sign > 0 else -vmax, "vmax": vmax if sign > 0 else -threshold}
                if kind == "glass":
                    plotting.plot_glass_brain(img, threshold=threshold, plot_abs=False, colorbar=True,
                                              display_mode="lyrz", figure=fig, title=title, **scale)
                else:
                    background = {"bg_img": bg_img} if bg_img is not None else {}
                    plotting.plot_stat_map(img, threshold=threshold, display_mode="z", cut_coords=7, colorbar=True,
                                           figure=fig, title=title, draw_cross=False, **scale, **background)
        except Exception as exc:  # nilearn's plotting has many failure modes on odd grids
            plt.close(fig)
            warnings.warn(f"{title}: nilearn could not draw the {kind} view ({type(exc).__name__}: {exc}); "
                          "showing maximum-intensity projections instead", stacklevel=2)
            fig = _projection_figure(data, threshold=threshold, title=title)
        figs.append(fig)
    return figs[0], figs[1]


def _projection_figure(data: np.ndarray, *, threshold: float, title: str, figsize=(10, 3.0), dpi: int = 80):
    """Maximum-intensity projections of the signed map along the three axes (|value| >= threshold):
    the fallback when nilearn cannot draw a grid."""
    from matplotlib.figure import Figure

    signed = np.where(np.abs(data) >= threshold, data, 0.0)
    fig = Figure(figsize=figsize, dpi=dpi)
    vmax = float(np.abs(signed).max()) or 1.0
    for k in range(3):
        ax = fig.add_subplot(1, 3, k + 1)
        idx = np.abs(signed).argmax(axis=k)
        proj = np.take_along_axis(signed, np.expand_dims(idx, k), axis=k).squeeze(k)
        ax.imshow(np.rot90(proj), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return fig
