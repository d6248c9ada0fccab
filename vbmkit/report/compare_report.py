"""The self-contained ``report.html`` of ``vbmkit compare`` (figures embedded as base64 PNG).

Sections follow the deepmriprep paper's comparison: tissue overlap per subject (Dice per tissue),
volumes (scatter and Bland-Altman), ROI volumes per region (r, ICC), t-maps per contrast (r,
glass brains of both maps and their difference) and the worst-agreeing subjects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vbmkit.io.atomic import write_text  # noqa: E402
from vbmkit.report.html import (  # noqa: E402
    Section,
    html_figure,
    html_list,
    html_paragraph,
    html_table,
    render_page,
)

TISSUE_NAMES = {"gm": "GM", "wm": "WM", "csf": "CSF"}


def _median_iqr(values: Sequence[Any]) -> str:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "–"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.3f} ({q1:.3f}–{q3:.3f})"


def overlap_summary(subjects: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Median (IQR) over subjects of Dice, probabilistic Dice and Jaccard per tissue (the paper's table)."""
    rows = []
    for tissue in ("gm", "wm", "csf"):
        row = {"tissue": TISSUE_NAMES[tissue]}
        for metric, label in (("dice", "Dice"), ("prob_dice", "prob. Dice"), ("jaccard", "Jaccard")):
            row[label] = _median_iqr([s.get(f"{metric}_{tissue}") for s in subjects.values()])
        rows.append(row)
    return pd.DataFrame(rows)


def map_r_summary(subjects: Mapping[str, Mapping[str, Any]], *, fwhm: str | None = None) -> pd.DataFrame:
    """Median (IQR) over subjects of the voxel-wise r of mwp1 (GM) and mwp2 (WM), raw and smoothed
    (``s<fwhm>mwp1``, ``s<fwhm>mwp2``) when ``fwhm`` is given."""
    kinds = ["mwp1", "mwp2"] + ([f"s{fwhm}mwp1", f"s{fwhm}mwp2"] if fwhm is not None else [])
    return pd.DataFrame([{"map": k, "Pearson r": _median_iqr([s.get(f"r_{k}") for s in subjects.values()])}
                         for k in kinds])


def _smoothed_blocks(metrics: Mapping[str, Any]) -> list[str]:
    """The sentence on raw vs smoothed r, the grid and mask of the smoothed r, the reference grid."""
    sm = metrics.get("smoothed") or {}
    blocks = []
    if sm:
        blocks.append(html_paragraph(
            f"{sm.get('note', '')} Smoothed maps: FWHM {sm.get('fwhm_mm', 6):g} mm; from "
            f"{'; '.join(sm.get('sources') or ['none'])}; grid {'; '.join(sm.get('grids') or ['none'])}; "
            f"mask: {sm.get('mask', '')}."))
    grid = metrics.get("reference_grid")
    if grid:
        box = grid.get("bounding_box_mm")
        note = {True: " (the bounding box it is written with)", False: " (not its usual bounding box)",
                None: ""}[grid.get("expected_bounding_box")]
        blocks.append(html_paragraph(
            f"Reference grid found: {grid['name']}: {' x '.join(map(str, grid['shape']))} voxels of "
            f"{'/'.join(f'{v:g}' for v in grid['voxel_mm'])} mm, bounding box {box} mm{note}."))
    return blocks


def _scatter_ba(pairs: Sequence[tuple[np.ndarray, np.ndarray, str]], *, ref: str, unit: str = "mL"):
    """One column per (ours, reference, title): scatter with identity line above, Bland-Altman below."""
    fig, axes = plt.subplots(2, len(pairs), figsize=(4.2 * len(pairs), 7.0), squeeze=False)
    for k, (x, y, title) in enumerate(pairs):
        ax1, ax2 = axes[0, k], axes[1, k]
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        ax1.scatter(y, x, s=12, alpha=0.7)
        if x.size:
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax1.set_xlabel(f"{ref} ({unit})")
        ax1.set_ylabel(f"vbmkit ({unit})")
        ax1.set_title(title)
        mean, diff = (x + y) / 2, x - y
        ax2.scatter(mean, diff, s=12, alpha=0.7)
        if diff.size > 1:
            md, sd = float(diff.mean()), float(diff.std(ddof=1))
            for v, style in ((md, "-"), (md - 1.96 * sd, "--"), (md + 1.96 * sd, "--")):
                ax2.axhline(v, color="k", ls=style, lw=0.8)
        ax2.set_xlabel(f"mean of both ({unit})")
        ax2.set_ylabel(f"vbmkit - {ref} ({unit})")
        ax2.set_title("Bland-Altman: mean, ±1.96 SD", fontsize=10)
    fig.tight_layout()
    return fig


def _volume_blocks(subjects: Mapping[str, Mapping[str, Any]], ref: str) -> list[str]:
    pairs = []
    for key, label in (("tiv", "TIV"), ("gm", "GM volume"), ("wm", "WM volume"), ("csf", "CSF volume")):
        x = np.array([s.get(f"{key}_ours_ml") for s in subjects.values()], dtype=float)
        y = np.array([s.get(f"{key}_{ref}_ml") for s in subjects.values()], dtype=float)
        if (np.isfinite(x) & np.isfinite(y)).any():
            pairs.append((x, y, label))
    if not pairs:
        return [html_paragraph("No volumes on both sides.", note=True)]
    return [html_figure(_scatter_ba(pairs, ref=ref), caption=f"Volumes per subject: vbmkit vs {ref} (top) and "
                                                             "Bland-Altman plots (bottom)")]


def _roi_blocks(roi: Mapping[str, Mapping[str, Any]], paired: pd.DataFrame, ref: str) -> list[str]:
    if not roi:
        return [html_paragraph("No ROI volumes on both sides (see 'missing').", note=True)]
    rows = []
    for region, d in roi.items():
        row: dict[str, Any] = {"region": region}
        for tissue in ("gm", "wm"):
            v = d.get(tissue, {})
            t = TISSUE_NAMES[tissue]
            row.update({f"r {t}": v.get("r"), f"ICC {t}": v.get("icc"), f"mean diff {t} (mL)": v.get("mean_diff_ml")})
        rows.append(row)
    table = pd.DataFrame(rows)
    r_gm = pd.to_numeric(table["r GM"], errors="coerce")
    blocks = [html_paragraph(f"{len(table)} regions; median r GM {np.nanmedian(r_gm):.3f}; regions with r GM > 0.9: "
                             f"{int((r_gm > 0.9).sum())} of {int(r_gm.notna().sum())}. ICC is ICC(2,1), absolute "
                             "agreement; mean diff is vbmkit - reference.")]
    blocks.append(html_table(table.sort_values("r GM", na_position="first"), max_rows=60))
    pairs = [(paired.loc[paired["tissue"] == t, "ours_ml"].to_numpy(float),
              paired.loc[paired["tissue"] == t, "reference_ml"].to_numpy(float),
              f"ROI {TISSUE_NAMES[t]} volumes") for t in ("gm", "wm") if (paired["tissue"] == t).any()]
    if pairs:
        blocks.append(html_figure(_scatter_ba(pairs, ref=ref), caption="LPBA40 volumes, one point per subject and "
                                                                       "region: scatter and Bland-Altman"))
    return blocks


def _thr(value: float | None) -> str:
    return "none" if value is None else f"t > {value:.2f}"


def _glass_brains(name: str, t_ours: np.ndarray, t_ref: np.ndarray, affine: np.ndarray, ref: str,
                  threshold: float | None) -> str:
    import nibabel as nib
    from nilearn import plotting

    fig, axes = plt.subplots(3, 1, figsize=(9, 9.6))
    vmax = float(max(np.abs(t_ours).max(), np.abs(t_ref).max(), 1e-6))
    diff = t_ours - t_ref
    for ax, data, title, thr in ((axes[0], t_ours, f"{name}: vbmkit median t", threshold),
                                 (axes[1], t_ref, f"{name}: {ref} median t", threshold),
                                 (axes[2], diff, "difference (vbmkit - reference)", None)):
        img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
        plotting.plot_glass_brain(img, axes=ax, title=title, colorbar=True, plot_abs=False,
                                  threshold=thr if thr is not None else "auto", cmap="RdBu_r",
                                  vmax=vmax if data is not diff else None, symmetric_cbar=True)
    return html_figure(fig, caption=f"{name}: glass brains of both median t-maps (threshold {_thr(threshold)}) and "
                                    "their difference, within the common mask")


def _contrast_blocks(contrasts: Mapping[str, Mapping[str, Any]], tmaps: Mapping[str, tuple], ref: str) -> list[str]:
    if not contrasts:
        return [html_paragraph("No contrasts compared (give --covariates, --formula and --contrast).", note=True)]
    rows = [{"contrast": k, "r median t": v.get("r_median_t"), "max |t| vbmkit": v.get("max_abs_t_ours"),
             f"max |t| {ref}": v.get(f"max_abs_t_{ref}"), "Dice t > thr": v.get("dice_suprathreshold"),
             "threshold": v.get("threshold_ours"), "N": v.get("n_subjects"), "same draws": v.get("same_draws")}
            for k, v in contrasts.items()]
    blocks = [html_table(pd.DataFrame(rows))]
    for name, (a, b, affine) in tmaps.items():
        blocks.append(_glass_brains(name, a, b, affine, ref, contrasts[name].get("threshold_ours")))
    return blocks


def _worst_blocks(worst: Sequence[Mapping[str, Any]], ref: str) -> list[str]:
    if not worst:
        return [html_paragraph("No subject with maps on both sides.", note=True)]
    blocks = []
    for w in worst:
        fig, axes = plt.subplots(2, 3, figsize=(7.5, 5))
        for row, (side, label) in enumerate((("ours", "vbmkit"), ("reference", ref))):
            for col, sl in enumerate(w[side]):
                axes[row, col].imshow(sl, cmap="gray", vmin=0, vmax=3 if "p0" in w["label"] else 1)
                axes[row, col].axis("off")
            axes[row, 0].set_title(f"{label}", loc="left")
        fig.suptitle(f"{w['name']}: GM Dice {w['dice_gm']:.3f} ({w['label']})")
        fig.tight_layout()
        blocks.append(html_figure(fig, caption=f"{w['name']}: middle axial, coronal, sagittal slices"))
    return blocks


def render_compare_report(metrics: Mapping[str, Any], *, paired: pd.DataFrame | None = None,
                          tmaps: Mapping[str, tuple] | None = None,
                          worst: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The HTML page of a comparison (see :func:`write_compare_report`)."""
    ref = metrics["reference"]["kind"]
    subjects = metrics.get("subjects", {})
    paired = paired if paired is not None else pd.DataFrame(columns=["subject", "region", "tissue", "ours_ml",
                                                                     "reference_ml"])
    overview = [
        # folder names only: a report (and its screenshot) must not carry machine paths;
        # metrics.json keeps the full paths
        html_paragraph(f"vbmkit outputs '{_folder(metrics.get('ours'))}' compared with {ref} outputs "
                       f"'{_folder(metrics['reference']['path'])}': {len(metrics.get('matched', []))} "
                       "subjects matched by name."),
        html_paragraph("Unmatched (vbmkit only): " + (", ".join(metrics["unmatched"]["ours_only"]) or "none")
                       + "; (reference only): " + (", ".join(metrics["unmatched"]["reference_only"]) or "none")),
    ]
    if metrics.get("missing"):
        overview += [html_paragraph("Missing pieces (reported, not fatal):"), html_list(metrics["missing"])]
    defs = pd.DataFrame([{"metric": k, "definition": v} for k, v in metrics.get("definitions", {}).items()])
    subj = pd.DataFrame.from_dict(subjects, orient="index")
    keep = [c for c in subj.columns if c.startswith(("dice_", "r_mwp", "r_s", "tiv_", "gm_", "wm_"))]
    fwhm = metrics.get("smoothed", {}).get("fwhm_mm")
    fwhm_text = f"{fwhm:g}" if fwhm is not None else None
    subj_table = subj[keep].reset_index(names="subject") if len(subj) else subj
    sections = [
        Section("Overview", overview, anchor="overview"),
        Section("Tissue maps per subject", [
            html_paragraph("Median (IQR) over subjects of the overlap of the native label maps, and of the "
                           "voxel-wise Pearson r of the modulated warped maps."),
            html_table(overlap_summary(subjects)), html_table(map_r_summary(subjects, fwhm=fwhm_text)),
            *_smoothed_blocks(metrics),
            html_table(subj_table, max_rows=100) if len(subj_table) else html_paragraph("none", note=True)],
            anchor="tissue"),
        Section("Volumes", _volume_blocks(subjects, ref), anchor="volumes"),
        Section("ROI volumes (LPBA40)", _roi_blocks(metrics.get("roi", {}), paired, ref), anchor="roi"),
        Section("t-maps per contrast", _contrast_blocks(metrics.get("contrasts", {}), tmaps or {}, ref),
                anchor="contrasts"),
        Section("Worst-agreeing subjects", _worst_blocks(worst or [], ref), anchor="worst"),
        Section("Definitions", [html_table(defs)] if len(defs) else [], anchor="definitions"),
    ]
    note = metrics["reference"].get("note")
    title = f"vbmkit vs {ref.upper()}: agreement" + (f" ({note})" if note else "")
    return render_page(title, sections,
                       subtitle="Every number is also in metrics.json and the CSV files beside this report.")


def write_compare_report(path: str | os.PathLike, metrics: Mapping[str, Any], *, paired: pd.DataFrame | None = None,
                         tmaps: Mapping[str, tuple] | None = None,
                         worst: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write ``report.html`` (atomic) from the metrics and the arrays the figures need.

    Parameters
    ----------
    metrics : mapping
        The content of metrics.json.
    paired : DataFrame, optional
        ROI volumes of both sides: subject, region, tissue, ours_ml, reference_ml.
    tmaps : mapping, optional
        contrast -> (t_ours, t_reference, affine): (X, Y, Z) arrays on the common grid.
    worst : sequence, optional
        [{name, dice_gm, label, ours: [3 slices], reference: [3 slices]}] of the worst subjects.
    """
    return write_text(path, render_compare_report(metrics, paired=paired, tmaps=tmaps, worst=worst))


def _folder(path: object) -> str:
    """The last folder of a path (``.../data/cat12`` -> ``cat12``); html_paragraph escapes it."""
    return Path(str(path)).name if path else "?"
