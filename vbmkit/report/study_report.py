"""``OUT/report.html``: the self-contained study report, built from the files the stages wrote.

Sections: results first (one per contrast: the tested tail(s) of the full-sample statistic at
the strongest correction available, as ``glm/report.html``, glass brains of the median statistic
and of the stability map, the cluster table with sub-peaks and LPBA40 / neuromorphometrics
labels), design, methods (the paragraph of :mod:`vbmkit.report.methods`), then cohort,
preprocessing, quality control, ROI results, comparison (when present), provenance. Every number shown is also in a
CSV/JSON beside the report: the stage outputs themselves, plus ``OUT/report_files/`` for the
figures and tables made here (``cohort_summary.csv``, ``contrasts.csv``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pandas as pd

from vbmkit import __version__
from vbmkit.io.atomic import atomic_path, write_text
from vbmkit.io.tables import MISSING_VALUES
from vbmkit.report.glm_report import methods_blocks
from vbmkit.report.html import (
    Section,
    escape,
    html_figure,
    html_paragraph,
    html_table,
    png_to_data_uri,
    render_page,
)
from vbmkit.report.qc_figures import review_html

FILES = "report_files"


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _csv(path: Path, **kwargs) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def _png(path: Path, caption: str, *, width: int | None = None) -> str:
    if not path.is_file():
        return html_paragraph(f"({path.name} missing)", note=True)
    return html_figure(png_to_data_uri(path.read_bytes()), caption=caption, width=width)


def _save_csv(out: Path, name: str, table: pd.DataFrame) -> None:
    with atomic_path(out / FILES / name) as tmp:
        table.to_csv(tmp, index=False)


def _cohort(out: Path, glm: dict | None) -> list[str]:
    table = _csv(out / "covariates.tsv", sep="\t", dtype=str)
    if table is None:
        return [html_paragraph("No covariate table in this study.", note=True)]
    id_col = table.columns[0]
    if glm is not None and glm.get("subjects"):
        for col in table.columns:
            if set(glm["subjects"]) <= set(table[col].astype(str)):
                id_col = col
                break
        table = table[table[id_col].isin(glm["subjects"])]
    rows = []
    for col in table.columns:
        if col == id_col:
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        present = table[col].notna() & ~table[col].isin(MISSING_VALUES)
        if values[present].notna().all() and int(present.sum()) > 0:  # numeric, n/a allowed
            rows.append({"variable": col, "n": int(values.notna().sum()), "mean": float(values.mean()),
                         "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                         "min": float(values.min()), "max": float(values.max()), "levels": ""})
        else:
            counts = table[col].fillna("n/a").value_counts()
            rows.append({"variable": col, "n": int(table[col].notna().sum()), "mean": None, "sd": None,
                         "min": None, "max": None,
                         "levels": ", ".join(f"{k}: {v}" for k, v in counts.items())[:200]})
    summary = pd.DataFrame(rows)
    _save_csv(out, "cohort_summary.csv", summary)
    blocks = [html_paragraph(f"{len(table)} subjects analysed (covariates.tsv; TIV merged from volumes.csv of "
                             "the preprocessing or the maps folder when the formula uses TIV without a column)."),
              html_table(summary, digits=2, caption="Cohort (report_files/cohort_summary.csv)")]
    shown = table.copy()
    for col in shown.columns:
        values = pd.to_numeric(shown[col], errors="coerce")
        if col != id_col and values.notna().all():
            shown[col] = values
    blocks.append(html_table(shown, digits=2, max_rows=40, caption="Subjects (covariates.tsv)"))
    return blocks


def _preprocess(out: Path) -> list[str]:
    vols = _csv(out / "preprocess" / "volumes.csv")
    if vols is None:
        return [html_paragraph("Preprocessing did not run in this study (inputs.maps were given).", note=True)]
    cols = [c for c in ("name", "tiv_ml", "gm_ml", "wm_ml", "csf_ml", "periventricular_gm_ml", "warp_mse",
                        "linear_elasticity", "bending_energy", "brain_jacobian_p0.5_rel", "brain_jacobian_p99.5_rel",
                        "jacobian_min", "folded_voxels", "volume_preservation_gm", "total_s") if c in vols.columns]
    blocks = [html_table(vols[cols], digits=3, max_rows=60, caption="Volumes (mL) and quality (preprocess/volumes.csv)")]
    errors = _csv(out / "preprocess" / "errors.csv")
    if errors is not None and len(errors):
        blocks.append(f'<p class="warn">{len(errors)} inputs failed (preprocess/errors.csv):</p>')
        blocks.append(html_table(errors, max_rows=40))
    return blocks


def _qc(out: Path) -> list[str]:
    qc = _json(out / "qc" / "qc.json")
    if qc is None:
        return [html_paragraph("Quality control did not run (fewer than 3 maps).", note=True)]
    flagged = qc.get("flagged", [])
    action = "excluded from the GLM and ROI statistics" if qc.get("exclude_flagged") else \
        "kept (set qc.exclude_flagged: true to exclude them)"
    blocks = [html_paragraph(
        f"Sample homogeneity of {qc['kind']}: mean correlation of each subject's map with all others over "
        f"{qc['n_voxels']} voxels; flag below mean - {qc['sd_threshold']} SD = {qc['threshold']:.4f}. "
        f"{len(flagged)} of {qc['n_subjects']} flagged, {action}."),
        _png(out / "qc" / "homogeneity.png", "Mean correlation per subject (qc/qc.csv)")]
    if flagged:
        blocks.append('<p class="warn">Flagged: ' + escape(", ".join(flagged)) + "</p>")
    table = _csv(out / "qc" / "qc.csv")
    if table is not None:
        keep = [c for c in ("name", "mean_correlation", "zscore", "flagged", "IQR_percent", "grade", "qc_image",
                            "tiv_ml", "gm_ml", "periventricular_gm_ml", "warp_mse", "linear_elasticity")
                if c in table.columns]
        blocks.append(html_table(table[keep].sort_values("mean_correlation"), digits=4, max_rows=30,
                                 links={"qc_image": "qc/"},
                                 caption="Lowest mean correlations first; qc_image links each subject's QC figure "
                                         "(all columns in qc/qc.csv)"))
    review = review_html(qc)  # homogeneity outliers and low quality grades, linked to their QC images
    if review:
        blocks.append(review)
    return blocks


def _glass(stat_path: Path, png: Path, *, threshold: float, title: str, two_sided: bool,
           signs: tuple[int, ...] = (1, -1)) -> str:
    """Glass brain of a statistic file; only the tails in ``signs`` are drawn (the others set to 0)."""
    import numpy as np

    from vbmkit.io.nifti import load_volume
    from vbmkit.report.glm_figures import plot_glass_brain

    if not stat_path.is_file():
        return html_paragraph(f"({stat_path.name} missing)", note=True)
    if not png.is_file() or png.stat().st_mtime < stat_path.stat().st_mtime:
        vol = load_volume(stat_path)
        data = vol.data.numpy()
        keep = np.zeros(data.shape, bool)
        for sign in signs:
            keep |= sign * data > 0
        plot_glass_brain(np.where(keep, data, 0.0), vol.affine, png, threshold=threshold, title=title,
                         two_sided=two_sided)
    return _png(png, title, width=620)


def _glass_fraction(path: Path, png: Path, *, title: str) -> str:
    """Glass brain of a fraction map in [0, 1] (a colour map whose top is not white)."""
    if not path.is_file():
        return html_paragraph(f"({path.name} missing)", note=True)
    if not png.is_file() or png.stat().st_mtime < path.stat().st_mtime:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import nibabel as nib
        from nilearn import plotting

        fig = plt.figure(figsize=(10, 3.2), dpi=100)
        try:
            with warnings.catch_warnings():  # nilearn warns on a map with nothing above 0.5: valid
                warnings.simplefilter("ignore", UserWarning)
                plotting.plot_glass_brain(nib.load(path), threshold=0.5, vmin=0.0, vmax=1.0, cmap="YlOrRd",
                                          plot_abs=True, colorbar=True, display_mode="lyrz", figure=fig,
                                          title=title)
            with atomic_path(png) as tmp:
                fig.savefig(tmp, format="png")
        finally:
            plt.close(fig)
    return _png(png, title, width=620)


def _contrast_sections(out: Path, glm: dict) -> list[Section]:
    from vbmkit.report.glm_report import contrast_blocks, tested_signs

    sections, rows = [], []
    for name, c in glm.get("contrasts", {}).items():
        files = c.get("files", {})
        stat = "t" if c.get("type") == "t" else "F"
        thr = float(c.get("threshold", 3.0))
        sub_thr = float(c.get("subsample_threshold", thr))
        blocks = [html_paragraph(
            f"{stat} contrast {name}, df {c.get('df')}; max {stat} {c.get('max_statistic', float('nan')):.2f}, "
            f"min {c.get('min_statistic', float('nan')):.2f}; voxels q(FDR) < 0.05: "
            f"{c.get('n_voxels_q_fdr_below_0.05')}; p(FWE) < 0.05: {c.get('n_voxels_p_fwe_below_0.05')}; "
            f"clusters above {thr:.2f}: {c.get('n_clusters')}.")]
        # the tested tail(s) only, at the strongest correction available, and the cluster table (as glm/report.html)
        tails, _ = contrast_blocks(out / "glm", name, c)
        blocks += tails
        two = c.get("type") == "t"
        figs = out / FILES / name
        if "median" in files:
            signs = tuple(tested_signs(c))
            tails = " and ".join({1: "positive", -1: "negative"}[k] for k in signs)
            blocks.append(_glass(out / "glm" / files["median"], figs / "median.png", threshold=sub_thr,
                                 title=f"{name}: median {stat} over subsamples (> {sub_thr:.2f}; {tails} tail)",
                                 two_sided=two, signs=signs))
            blocks.append(_glass_fraction(out / "glm" / files["stability"], figs / "stability.png",
                                          title=f"{name}: fraction of subsamples above threshold (> 0.5)"))
        rows.append({"contrast": name, "type": c.get("type"), "df": str(c.get("df")),
                     "max_statistic": c.get("max_statistic"), "min_statistic": c.get("min_statistic"),
                     "threshold": thr, "q_fdr_below_0.05": c.get("n_voxels_q_fdr_below_0.05"),
                     "p_fwe_below_0.05": c.get("n_voxels_p_fwe_below_0.05"), "clusters": c.get("n_clusters")})
        sections.append(Section(f"Contrast: {name}", blocks, anchor=f"c-{name}"))
    if rows:
        table = pd.DataFrame(rows)
        _save_csv(out, "contrasts.csv", table)
        sections.insert(0, Section("Contrasts", [html_table(table, digits=2, caption="glm/summary.json")]))
    return sections


def _roi(out: Path) -> list[str]:
    stats = _csv(out / "roi" / "roi_stats.csv")
    long = _csv(out / "roi" / "roi_long.csv")
    blocks = []
    if long is not None:
        blocks.append(html_paragraph(f"{long['subject'].nunique() if 'subject' in long else '?'} subjects x "
                                     f"{long['region'].nunique() if 'region' in long else '?'} regions "
                                     "(roi/roi_long.csv, roi/roi_wide.csv, CAT12 exports in roi/)."))
    if stats is not None and len(stats):
        pcol = next((c for c in ("q_fdr", "p", "p_value") if c in stats.columns), None)
        top = stats.sort_values(pcol) if pcol else stats
        blocks.append(html_table(top, digits=4, max_rows=25, caption="ROI statistics, smallest q first (roi/roi_stats.csv; "
                                 "FDR across the regions of each atlas)"))
    return blocks or [html_paragraph("ROI tables are missing.", note=True)]


def _compare(out: Path) -> list[str]:
    metrics = _json(out / "compare" / "metrics.json")
    if metrics is None:
        return [html_paragraph("compare/metrics.json is missing.", note=True)]
    blocks = [html_paragraph("Full comparison report: compare/report.html (metrics.json and CSVs beside it).")]
    contrasts = metrics.get("contrasts") or {}
    if contrasts:
        blocks.append(html_table(pd.DataFrame(contrasts).T.reset_index(names="contrast"), digits=3,
                                 caption="t-map agreement (compare/metrics.json)"))
    subjects = metrics.get("subjects") or {}
    if subjects:
        blocks.append(html_table(pd.DataFrame(subjects).T.reset_index(names="subject"), digits=3, max_rows=30,
                                 caption="Per subject (compare/metrics.json)"))
    return blocks


def _provenance(out: Path, yaml_text: str) -> list[str]:
    prov = _json(out / "provenance.json") or {}
    stages = prov.get("stages", {})
    table = pd.DataFrame([{"stage": k, "status": v.get("status"), "seconds": v.get("seconds")}
                          for k, v in stages.items()])
    pk = prov.get("packages", {})
    return [html_table(table, digits=1, caption="Stages (provenance.json)") if len(table) else "",
            html_paragraph("Versions: " + ", ".join(f"{k} {v}" for k, v in pk.items())),
            html_paragraph(f"Device: {prov.get('device', {}).get('name', '?')}; YAML sha256 "
                           f"{prov.get('yaml_sha256', '?')[:16]}..."),
            f"<pre>{escape(yaml_text)}</pre>"]


def write_study_report(out: str | os.PathLike, *, title: str, study_name: str, yaml_text: str) -> Path:
    """Write ``OUT/report.html`` from the stage outputs found in ``out``; return its path."""
    out = Path(out)
    glm = _json(out / "glm" / "summary.json")
    sections = []  # results first, then the cohort and quality control behind them
    if glm is not None:
        design = [html_paragraph(f"Formula: {glm.get('formula')} (intercept added; continuous covariates "
                                 f"standardised: {bool(glm.get('standardized'))}); N = {glm.get('n_subjects')}, "
                                 f"{glm.get('n_voxels')} voxels in the mask. Subsamples: "
                                 f"{glm.get('settings', {}).get('subsamples')} x "
                                 f"{glm.get('settings', {}).get('fraction')}."),
                  _png(out / "glm" / "design.png", "Design matrix (glm/design.csv)")]
        sections += _contrast_sections(out, glm)
        sections.append(Section("Design", design))
        sections.append(Section("Methods", methods_blocks(glm)))
    sections += [Section("Cohort", _cohort(out, glm)), Section("Preprocessing", _preprocess(out)),
                 Section("Quality control", _qc(out))]
    if (out / "roi").is_dir():
        atlases = str((_json(out / "roi" / "roi_summary.json") or {}).get("atlas") or "lpba40")
        sections.append(Section(f"Regions ({', '.join(atlases.split(','))})", _roi(out)))
    if (out / "compare").is_dir():
        sections.append(Section("Comparison", _compare(out)))
    sections.append(Section("Provenance", _provenance(out, yaml_text)))
    subtitle = f"study {study_name}; generated by vbmkit {__version__} into the folder {out.name}"
    path = out / "report.html"
    write_text(path, render_page(title, sections, subtitle=subtitle))
    return path

