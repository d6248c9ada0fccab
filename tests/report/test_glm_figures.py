"""Design-matrix and glass-brain figures are written (PNG) even on odd grids."""

from __future__ import annotations

import numpy as np
import pytest

from vbmkit.report import glm_figures
from vbmkit.report.glm_figures import plot_design, plot_glass_brain

PNG = b"\x89PNG"


def _pixels(path):
    from matplotlib.image import imread

    return imread(str(path))[..., :3]


def _red(rgb):
    """Pixels drawn in a warm colour (the positive side of nilearn's cold_hot map)."""
    return int(((rgb[..., 0] > 0.6) & (rgb[..., 2] < 0.4)).sum())


def test_design_png(tmp_path):
    """The figure has the documented size and shows the design: the all-ones intercept column is
    white, the 0/1 column alternates black and white, and nothing else is drawn in pure grey."""
    X = np.column_stack([np.ones(9), np.arange(9.0), np.tile([0.0, 1.0, 0.0], 3)])
    path = plot_design(X, ["Intercept", "age", "C(sex)[T.m]"], tmp_path / "d.png")
    assert path.read_bytes()[:4] == PNG
    rgb = _pixels(path)
    assert rgb.shape[:2] == (600, int(max(3.0, 0.6 * 3 + 1.5) * 100))  # figsize x dpi
    grey = rgb.mean(axis=-1)
    # the matrix is drawn with gray, vmin -1, vmax 1: 1 -> white, 0 -> mid grey, -1 -> black
    assert (np.abs(grey - 0.5) < 0.02).sum() > 1000  # zeros of the 0/1 column (mid grey)
    assert (grey > 0.98).sum() > 1000


def test_design_png_changes_with_the_design(tmp_path):
    a = _pixels(plot_design(np.column_stack([np.ones(9), np.arange(9.0)]), ["Intercept", "age"], tmp_path / "a.png"))
    b = _pixels(plot_design(np.column_stack([np.ones(9), -np.arange(9.0)]), ["Intercept", "age"], tmp_path / "b.png"))
    assert a.shape == b.shape and np.abs(a - b).max() > 0.5


def test_glass_brain_and_fallback(tmp_path, monkeypatch):
    stat = np.zeros((7, 8, 9), dtype=np.float32)
    stat[2:4, 3:5, 4:6] = 6.0
    affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    assert plot_glass_brain(stat, affine, tmp_path / "g.png", threshold=3.0, title="t").read_bytes()[:4] == PNG
    # an empty map is a valid (blank) figure, not an error
    assert plot_glass_brain(np.zeros_like(stat), affine, tmp_path / "e.png", threshold=3.0, title="F",
                            two_sided=False).is_file()
    # the suprathreshold blob is drawn in warm colours; below the threshold nothing is
    assert _red(_pixels(tmp_path / "g.png")) > 50
    plot_glass_brain(stat, affine, tmp_path / "h.png", threshold=7.0, title="t")
    assert _red(_pixels(tmp_path / "h.png")) < _red(_pixels(tmp_path / "g.png")) / 10

    import nilearn.plotting

    def broken(*args, **kwargs):
        raise RuntimeError("no glass brain today")

    monkeypatch.setattr(nilearn.plotting, "plot_glass_brain", broken)
    with pytest.warns(UserWarning, match="no glass brain today.*maximum-intensity projections"):
        glm_figures.plot_glass_brain(stat, affine, tmp_path / "f.png", threshold=3.0, title="t")
    assert (tmp_path / "f.png").read_bytes()[:4] == PNG
