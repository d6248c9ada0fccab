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


def _centre(mask: np.ndarray) -> tuple[int, int, int]:
    """Voxel index of the centre of mass of ``mask`` (the grid centre when it is empty)."""
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return tuple(int(s) // 2 for s in mask.shape)
    return tuple(int(round(v)) for v in idx.mean(axis=0))


def _off_midline(centre: tuple[int, int, int], voxel_size, shape, mm: float = 20.0) -> tuple[int, int, int]:
    """The centre moved ``mm`` to the right (RAS +x), so the sagittal slice cuts a hemisphere."""
    x = min(int(centre[0] + round(mm / float(voxel_size[0]))), int(shape[0]) - 1)
    return (x, centre[1], centre[2])


def _slices(vol: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices of a RAS (X, Y, Z) volume, rows = up, for imshow."""
    x, y, z = centre
    return [vol[:, :, z].T, vol[:, y, :].T, vol[x, :, :].T]


def _aspects(voxel_size) -> list[float]:
    vx, vy, vz = (float(v) for v in voxel_size)
    return [vy / vx, vz / vx, vz / vy]


def subject_qc_figure(t1: np.ndarray, p0: np.ndarray, brain_mask: np.ndarray, voxel_size,
                      warped_gm: np.ndarray, template_gm: np.ndarray, template_voxel_size,
                      path: str | os.PathLike, *, title: str = "") -> None:
    """Per-subject visual QC: segmentation over the T1, brain-mask outline, warped GM vs template.

    Parameters
    ----------
    t1 : ndarray (X, Y, Z)
        The input T1 on its native grid, RAS voxel order.
    p0 : ndarray (X, Y, Z)
        CAT12 label map 0..3 on the same grid (1 CSF, 2 GM, 3 WM).
    brain_mask : ndarray (X, Y, Z) bool
        The brain mask on the same grid (drawn as a yellow outline).
    voxel_size : sequence of 3 floats
        Native voxel size in mm (aspect ratios of the panels).
    warped_gm : ndarray (X', Y', Z')
        mwp1 on the template grid (RAS).
    template_gm : ndarray (X', Y', Z')
        Template_4_GS's GM probability on the same grid (drawn as red contours at 0.5).
    template_voxel_size : sequence of 3 floats
        Template voxel size in mm.
    path : path
        PNG to write (atomically).
    title : str
        Figure title (subject name, quality grade).

    Notes
    -----
    Top row: axial, coronal, sagittal slices through the brain mask's centre of mass; the T1
    in grey (1st-99th percentile inside the mask), the label map in colour (CSF blue, GM green,
    WM yellow, 22 % opaque); the sagittal slices lie 20 mm right of the centre. Bottom row: the warped GM through the template's centre with
    the template's GM = 0.5 contour in red: a good warp puts the GM ribbon on the contour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    t1 = np.asarray(t1, dtype=np.float32)
    mask = np.asarray(brain_mask, dtype=bool)
    inside = t1[mask] if mask.any() else t1.reshape(-1)
    lo, hi = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
    labels = np.rint(np.asarray(p0, dtype=np.float32)).astype(np.int8)
    seg_cmap = ListedColormap(["#3a7bd5", "#2ecc71", "#f4e04d"])
    c_native = _off_midline(_centre(mask), voxel_size, mask.shape)
    c_template = _off_midline(_centre(np.asarray(template_gm) > 0.1), template_voxel_size, np.shape(template_gm))
    gm_top = float(np.percentile(warped_gm, 99.5)) if np.size(warped_gm) else 1.0
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.2), dpi=100, facecolor="black")
    names = ("axial", "coronal", "sagittal")
    for k, (img, lab, m, asp) in enumerate(zip(_slices(t1, c_native), _slices(labels, c_native),
                                                _slices(mask.astype(np.float32), c_native), _aspects(voxel_size),
                                                strict=True)):
        ax = axes[0, k]
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=asp, interpolation="nearest")
        ax.imshow(np.ma.masked_less(lab, 1), cmap=seg_cmap, vmin=1, vmax=3, alpha=0.22, origin="lower",
                  aspect=asp, interpolation="nearest")
        if m.any() and not m.all():
            ax.contour(m, levels=[0.5], colors="#ffd400", linewidths=0.8)
        ax.set_title(f"T1 + segmentation, {names[k]}", color="white", fontsize=9)
    for k, (img, tpl, asp) in enumerate(zip(_slices(np.asarray(warped_gm, dtype=np.float32), c_template),
                                            _slices(np.asarray(template_gm, dtype=np.float32), c_template),
                                            _aspects(template_voxel_size), strict=True)):
        ax = axes[1, k]
        ax.imshow(img, cmap="gray", vmin=0, vmax=max(gm_top, 1e-6), origin="lower", aspect=asp, interpolation="nearest")
        ax.contour(tpl, levels=[0.5], colors="#e74c3c", linewidths=0.7)
        ax.set_title(f"warped GM (mwp1) + template GM 0.5, {names[k]}", color="white", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title + "\nbrain mask: yellow outline; CSF blue, GM green, WM yellow", color="white", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor="black")
    plt.close(fig)


def qc_image_link(report_dir: str | os.PathLike, name: str, *, relative_to: str | os.PathLike) -> str | None:
    """Relative link from a report page to a subject's ``<name>_qc.png``, or None when absent.

    For the study report: ``qc_image_link(<preprocess>/<name>/report, name, relative_to=<study out>)``.
    """
    from pathlib import Path

    path = Path(report_dir) / f"{name}_qc.png"
    if not path.is_file():
        return None
    return Path(os.path.relpath(path, Path(relative_to))).as_posix()


def review_html(qc: dict, *, href_prefix: str = "qc/") -> str:
    """HTML list linking each subject of ``qc.json``'s ``review`` to its QC image.

    For the study report's quality-control section: ``review_html(qc_json)`` where the report
    sits in the study folder and ``qc.json`` in ``qc/`` (``qc_image`` paths are relative to
    ``qc/``, hence ``href_prefix``). Returns ``""`` when nothing needs review.
    """
    from html import escape

    items = qc.get("review") or []
    if not items:
        return ""
    rows = []
    for item in items:
        reasons = escape("; ".join(item.get("reasons", [])))
        image = item.get("qc_image") or ""
        name = escape(str(item.get("name", "")))
        link = f'<a href="{escape(href_prefix + image)}">{name}</a>' if image else name
        rows.append(f"<li>{link}: {reasons}</li>")
    return ('<p class="warn">For review (homogeneity outliers and image-quality grades below '
            f'{float(qc.get("low_grade_percent", 70.0)):.0f} %; each links its QC image):</p><ul>'
            + "".join(rows) + "</ul>")
