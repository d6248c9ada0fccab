"""Figures of the GLM report: only the tested tail reaches nilearn; the design figure checks its weights."""

from __future__ import annotations

import numpy as np
import pytest

from vbmkit.report.glm_figures import design_contrast_figure, tail_figures

SHAPE = (7, 8, 9)
AFFINE = np.array([[-2.0, 0, 0, 6.0], [0, 1.5, 0, -6.0], [0, 0, 1.0, -4.0], [0, 0, 0, 1.0]])


@pytest.mark.parametrize("sign", [1, -1])
def test_only_the_tested_tail_is_drawn(monkeypatch, sign):
    from nilearn import plotting

    seen = {}

    def record(name):
        def fake(img, **kwargs):
            seen[name] = (np.asarray(img.dataobj), kwargs)
        return fake

    monkeypatch.setattr(plotting, "plot_glass_brain", record("glass"))
    monkeypatch.setattr(plotting, "plot_stat_map", record("slices"))
    stat = np.zeros(SHAPE)
    stat[1, 1, 1], stat[5, 5, 5], stat[3, 3, 3] = 4.0, -5.0, 3.5
    glass, slices = tail_figures(stat, AFFINE, sign=sign, title="t")
    for name in ("glass", "slices"):
        data, kwargs = seen[name]
        assert (sign * data >= 0).all() and (data != 0).sum() == (2 if sign == 1 else 1)
        # one-sided colour scale from the smallest shown |t| (x 0.999: drawn, not cut) to the largest
        lo, hi = (3.5 * 0.999, 4.0) if sign == 1 else (-5.0, -5.0 * 0.999)
        assert kwargs["vmin"] == pytest.approx(lo) and kwargs["vmax"] == pytest.approx(hi)
        assert kwargs["symmetric_cbar"] is False
    import matplotlib.pyplot as plt

    plt.close(glass)
    plt.close(slices)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="sign: expected 1 or -1; got 0"):
        tail_figures(np.zeros(SHAPE), AFFINE, sign=0, title="t")
    with pytest.raises(ValueError, match="contrast 'age': expected 3 weights"):
        design_contrast_figure(np.ones((5, 3)), ["a", "b", "c"], {"age": [0, 1]})


def test_design_figure_has_one_strip_per_contrast():
    fig = design_contrast_figure(np.random.default_rng(0).standard_normal((6, 3)), ["a", "b", "c"],
                                 {"t1": [0, 1, 0], "F": [[0, 1, 0], [0, 0, 1]]})
    assert len(fig.axes) == 3 and [ax.get_ylabel() for ax in fig.axes[:2]] == ["t1", "F"]
    assert fig.axes[1].images[0].get_array().shape == (2, 3)  # the F contrast's two rows
