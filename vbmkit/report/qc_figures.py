"""Figures of the sample homogeneity check (matplotlib, written atomically as PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from vbmkit.io.atomic import atomic_path


def homogeneity_figure(names: Sequence[str], mean_correlation: np.ndarray, threshold: float,
                       path: str | os.PathLike) -> None:
    """Mean correlation of each subject with the others, sorted, with the flag threshold.

    Parameters
    ----------
    names : sequence of str
        Subject names, N.
    mean_correlation : ndarray (N,)
    threshold : float
        Subjects below it are flagged (drawn in red).
    path : path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(mean_correlation, dtype=float)
    order = np.argsort(values)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.22 * len(values) + 2), 3.2), dpi=100)
    colors = ["#c0392b" if values[i] < threshold else "#2e86c1" for i in order]
    ax.bar(range(len(values)), values[order], color=colors)
    ax.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label=f"mean - k SD = {threshold:.3f}")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels([names[i] for i in order], rotation=90, fontsize=6)
    lo = min(values.min(), threshold)
    ax.set_ylim(max(0.0, lo - 0.05), min(1.0, values.max() + 0.02))
    ax.set_ylabel("mean correlation")
    ax.set_title("Sample homogeneity (mwp1)")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
