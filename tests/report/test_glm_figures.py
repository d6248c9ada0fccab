"""Design-matrix and glass-brain figures are written (PNG) even on odd grids."""

from __future__ import annotations

import numpy as np
import pytest

from vbmkit.report import glm_figures
from vbmkit.report.glm_figures import plot_design, plot_glass_brain

PNG = b"\x89PNG"


def test_design_png(tmp_path):
    X = np.column_stack([np.ones(9), np.arange(9.0), np.tile([0.0, 1.0, 0.0], 3)])
    path = plot_design(X, ["Intercept", "age", "C(sex)[T.m]"], tmp_path / "d.png")
    assert path.read_bytes()[:4] == PNG


def test_glass_brain_and_fallback(tmp_path, monkeypatch):
    stat = np.zeros((7, 8, 9), dtype=np.float32)
    stat[2:4, 3:5, 4:6] = 6.0
    affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    assert plot_glass_brain(stat, affine, tmp_path / "g.png", threshold=3.0, title="t").read_bytes()[:4] == PNG
    # an empty map is a valid (blank) figure, not an error
    assert plot_glass_brain(np.zeros_like(stat), affine, tmp_path / "e.png", threshold=3.0, title="F",
                            two_sided=False).is_file()

    import nilearn.plotting

    def broken(*args, **kwargs):
        raise RuntimeError("no glass brain today")

    monkeypatch.setattr(nilearn.plotting, "plot_glass_brain", broken)
    with pytest.warns(UserWarning, match="no glass brain today.*maximum-intensity projections"):
        glm_figures.plot_glass_brain(stat, affine, tmp_path / "f.png", threshold=3.0, title="t")
    assert (tmp_path / "f.png").read_bytes()[:4] == PNG
