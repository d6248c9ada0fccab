"""``OUT/report.html`` of ``vbmkit glm``: design, thresholded maps, cluster tables and a methods paragraph.

Built from the files the GLM wrote into ``OUT`` (``summary.json`` content, ``design.csv``, the
statistic and p maps, ``clusters.csv``), so it can be rebuilt from a finished run. One
self-contained file (figures embedded as base64 PNG, no external links), with no machine paths:
files are named relative to ``OUT``.

What is shown per contrast, for each **tested tail only** (t: the ``tail`` of the permutation
inference, ``positive`` without it; F: positive): the statistic where the strongest available
correction says p < 0.05 (TFCE FWE, else voxel maxT FWE), else where the uncorrected p is below
the report threshold (p < 0.001 by default), stated in the caption; glass brain and axial slices
over CAT12's T1 template.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from vbmkit import __version__
from vbmkit.io.atomic import write_text
from vbmkit.report.html import (
    Section,
    escape,
    figure_to_data_uri,
    html_figure,
    html_paragraph,
    html_table,
    render_page,
)
from vbmkit.report.methods import methods_paragraph, references

#: FWE p below which a voxel is shown as significant.
ALPHA = 0.05
_P_COLUMNS = ("p", "q_fdr", "p_fwe", "p_fwe_tfce", "p_fwe_cluster", "p_fwe_mass")
_TAIL_NAMES = {1: "positive", -1: "negative"}


@lru_cache(maxsize=1)
def _background():
    """CAT12's brain-extracted T1 template at 1 mm (every 2nd voxel of the 0.5 mm file), or None."""
    try:
        import nibabel as nib

        from vbmkit.io.resources import template_path

        img = nib.load(str(template_path("Template_05mm_bet")))
        data = np.asarray(img.dataobj)[::2, ::2, ::2].astype(np.float32)
        affine = img.affine.copy()
        affine[:3, :3] *= 2.0
        return nib.Nifti1Image(data, affine)
    except Exception as exc:  # the template is only a background: nilearn's MNI152 stands in
        warnings.warn(f"report.html: CAT12's T1 template unavailable ({exc}); slices are drawn over "
                      "nilearn's MNI152", stacklevel=2)
        return None


def tested_signs(contrast: dict) -> list[int]:
    """The tails drawn for one contrast of ``summary.json``: ``[1]``, ``[-1]`` or ``[1, -1]``."""
    if contrast.get("type") != "t":
        return [1]
    tail = (contrast.get("inference") or {}).get("tail", "positive")
    return {"positive": [1], "negative": [-1], "both": [1, -1]}[tail]


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from vbmkit.io.nifti import load_volume

    vol = load_volume(path)
    return vol.data.numpy().astype(np.float64), np.asarray(vol.affine, dtype=np.float64)


def _shown(out: Path, name: str, c: dict) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
    """(stat, affine, what is shown, the significance map or None for the uncorrected threshold)."""
    files = c.get("files", {})
    stat, affine = _load(out / files["stat"])
    n_perm = (c.get("inference") or {}).get("n_permutations")
    for role, what in (("p_fwe_tfce", "TFCE, FWE p < 0.05"), ("p_fwe", "voxel-level FWE p < 0.05 (maxT)")):
        if role in files and (out / files[role]).is_file():
            p, _ = _load(out / files[role])
            return stat, affine, f"{what}, {n_perm} permutations", p < ALPHA
    return stat, affine, "", None


def _format_table(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for col in _P_COLUMNS:
        if col in shown.columns:
            shown[col] = [("" if pd.isna(v) else f"{float(v):.3g}") for v in shown[col]]
    for col in ("lpba40_region", "neuromorphometrics_region"):
        if col in shown.columns:
            shown[col] = ["" if pd.isna(v) else str(v) for v in shown[col]]
    return shown


def contrast_blocks(out: Path, name: str, c: dict, bg=None) -> tuple[list[str], dict]:
    """HTML blocks of one contrast (figures per tested tail, cluster table) and its overview row.

    ``out`` is the GLM output folder; ``c`` the contrast's entry of ``summary.json``; ``bg`` the
    slices' background image (default CAT12's T1 template). Shared with the study report.
    """
    bg = bg if bg is not None else _background()
    files = c.get("files", {})
    stat_name = "t" if c.get("type") == "t" else "F"
    thr = float(c.get("threshold", float("nan")))
    stat, affine, corrected, significant = _shown(out, name, c)
    df2 = float(c.get("df", [float("nan")])[-1])
    uncorrected = f"uncorrected p < 0.001 ({stat_name} beyond {thr:.2f}, df {df2:g})"
    blocks, row = [], {"contrast": name, "type": c.get("type"), "df": ", ".join(f"{d:g}" for d in c.get("df", []))}
    for sign in tested_signs(c):
        tail = _TAIL_NAMES[sign] if c.get("type") == "t" else "F"
        if significant is not None and (significant & (sign * stat > 0)).any():
            keep, what = significant & (sign * stat > 0), corrected
        else:
            keep, what = sign * stat > thr, uncorrected
            if significant is not None:
                blocks.append(html_paragraph(f"No voxel of the {tail} tail survives {corrected}; shown instead: "
                                             f"{uncorrected}.", note=True))
        n_shown = int(keep.sum())
        row[f"{tail} tail: shown"] = f"{n_shown} voxels at {what}"
        title = f"{name} ({tail} tail): {stat_name}, {what}"
        caption = (f"{name}, {tail} tail: the {stat_name} map where {what}; {n_shown} voxels. Only the tested "
                   f"tail is drawn.")
        glass, slices = _figures(np.where(keep, stat, 0.0), affine, sign=sign, title=title, bg=bg)
        blocks.append(html_figure(glass, caption=f"Glass brain. {caption}"))
        blocks.append(html_figure(slices, caption=f"Axial slices over the template. {caption}"))
    clusters_path = out / files.get("clusters", "clusters.csv")
    table = pd.read_csv(clusters_path) if clusters_path.is_file() else pd.DataFrame()
    if len(table):
        rel = clusters_path.relative_to(out).as_posix()
        blocks.append('<div style="overflow-x:auto">' + html_table(
            _format_table(table), digits=3, max_rows=60, caption=f"Clusters and up to 3 peaks > 8 mm apart ({rel})")
            + "</div>")
    else:
        blocks.append(html_paragraph("No cluster above the cluster threshold with at least the minimum size.",
                                     note=True))
    return blocks, row


def _figures(stat: np.ndarray, affine: np.ndarray, *, sign: int, title: str, bg) -> tuple[str, str]:
    from vbmkit.report.glm_figures import tail_figures

    glass, slices = tail_figures(stat, affine, sign=sign, title=title, bg_img=bg)
    return figure_to_data_uri(glass, dpi=80), figure_to_data_uri(slices, dpi=80)


def _design_figure(out: Path, summary: dict) -> str:
    from vbmkit.report.glm_figures import design_contrast_figure

    design = pd.read_csv(out / summary.get("files", {}).get("design_csv", "design.csv"))
    columns = list(summary.get("design_columns") or design.columns[1:])
    X = design[columns].to_numpy(dtype=np.float64)
    weights = {k: np.asarray(c["matrix"], dtype=np.float64) for k, c in summary.get("contrasts", {}).items()}
    fig = design_contrast_figure(X, columns, weights)
    return html_figure(figure_to_data_uri(fig, dpi=80),
                       caption=f"Design matrix of '{summary.get('formula')}' (N = {X.shape[0]}) with each "
                               "contrast's weights above it (design.csv).")


def methods_blocks(summary: dict) -> list[str]:
    """The methods paragraph and its reference list as HTML blocks (shared with the study report)."""
    return [html_paragraph(methods_paragraph(summary)),
            "<ol>" + "".join(f"<li>{escape(r)}</li>" for r in references()) + "</ol>"]


def glm_report_html(out: str | os.PathLike, summary: dict) -> str:
    """The HTML text of the GLM report of the run in ``out`` (see the module docstring)."""
    out = Path(out)
    bg = _background()
    contrast_sections, rows = [], []
    for name, c in summary.get("contrasts", {}).items():
        blocks, row = contrast_blocks(out, name, c, bg)
        contrast_sections.append(Section(f"Contrast: {name}", blocks, anchor=f"c-{name}"))
        rows.append(row)
    overview = [html_paragraph(
        f"Formula '{summary.get('formula')}', N = {summary.get('n_subjects')} subjects, "
        f"{summary.get('n_voxels')} voxels in the mask (mask.nii.gz). Each contrast is drawn for its tested "
        "tail(s) only, at the strongest correction available (TFCE FWE, else voxel FWE p < 0.05), or at "
        "uncorrected p < 0.001 when no permutations were run or nothing survives: the caption says which."),
        html_table(pd.DataFrame(rows), caption="What each contrast shows")]
    sections = [Section("Results", overview), *contrast_sections,
                Section("Design", [_design_figure(out, summary)]),
                Section("Methods", methods_blocks(summary))]
    return render_page("vbmkit glm report", sections, subtitle=f"vbmkit {__version__}; all files named relative "
                                                               "to the output folder")


def write_glm_report(out: str | os.PathLike, summary: dict) -> Path:
    """Write ``out/report.html`` for the GLM run whose files are in ``out``; return its path."""
    path = Path(out) / "report.html"
    write_text(path, glm_report_html(out, summary))
    return path
