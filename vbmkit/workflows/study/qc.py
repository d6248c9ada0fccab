"""Quality control of a sample before statistics: CAT12's "check sample homogeneity".

Writes into ``out``:

- ``qc.csv``: one row per map (``name``, ``path``, ``mean_correlation``, ``zscore``,
  ``flagged``) plus the per-subject quality figures of the preprocessing when given;
- ``correlation.csv``: the N x N correlation matrix (names as header and first column);
- ``qc.json``: threshold, settings, flagged names;
- ``homogeneity.png``: mean correlation per subject with the threshold line.

Each row of ``qc.csv`` also links the subject's visual QC image of the preprocessing
(``qc_image``: ``<subject>/report/<name>_qc.png`` relative to ``out``) and its image-quality
rating (``IQR``: CAT12 mark, ``IQR_percent``, ``grade``) when its report is beside the maps;
``qc.json``'s ``review`` lists every homogeneity outlier and every subject graded below
:data:`LOW_GRADE_PERCENT` with the reason and the link, for the study report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from vbmkit.config import QcConfig
from vbmkit.io.atomic import atomic_path, write_json
from vbmkit.io.bids_write import bids_entities, bids_map_kind
from vbmkit.io.maps import load_maps
from vbmkit.io.nifti import image_stem
from vbmkit.report.qc_figures import homogeneity_figure
from vbmkit.stats.qc import correlation_matrix, sample_homogeneity

#: Voxels per chunk of the correlation GEMM (N x chunk float32 on the device).
CHUNK_VOXELS = 65536
#: Subjects whose image-quality rating is below this percent (CAT12's C-, mark 3.5) are listed
#: for review.
LOW_GRADE_PERCENT = 70.0


def subject_quality(map_path: Path, name: str, out: Path) -> dict:
    """Rating and QC image of one subject from the preprocessing report beside its map.

    Looks for ``<subject>/report/<name>.json`` and ``<name>_qc.png`` beside ``<subject>/mri/``
    (or ``<subject>/anat/`` in the bids layout).
    Returns ``IQR``, ``IQR_percent``, ``grade`` (NaN/empty without a rating) and ``qc_image``
    (path relative to ``out``, empty when there is none).
    """
    report_dir = _report_dir(map_path)
    row: dict = {"IQR": float("nan"), "IQR_percent": float("nan"), "grade": "", "qc_image": ""}
    try:
        rating = json.loads((report_dir / f"{name}.json").read_text(encoding="utf-8")).get("quality_rating") or {}
    except (OSError, ValueError):
        rating = {}
    if isinstance(rating, dict) and "marks" in rating:
        row.update({"IQR": rating["marks"].get("IQR"), "IQR_percent": rating.get("IQR_percent"),
                    "grade": rating.get("grade", "")})
    png = report_dir / f"{name}_qc.png"
    if png.is_file():
        row["qc_image"] = Path(os.path.relpath(png, out)).as_posix()
    return row


def review_list(table: pd.DataFrame) -> list[dict]:
    """Homogeneity outliers and low grades of ``qc.csv``: name, reasons, QC image link."""
    out = []
    for _, r in table.iterrows():
        reasons = []
        if bool(r["flagged"]):
            reasons.append(f"homogeneity outlier (mean correlation {r['mean_correlation']:.3f}, z {r['zscore']:.2f})")
        pct = r.get("IQR_percent")
        if pct is not None and pd.notna(pct) and float(pct) < LOW_GRADE_PERCENT:
            reasons.append(f"image quality {float(pct):.1f} % ({r.get('grade', '')})")
        if reasons:
            out.append({"name": r["name"], "reasons": reasons, "qc_image": r.get("qc_image", "") or ""})
    return out


def _report_dir(map_path: Path) -> Path:
    """``<subject>/report`` of a map in ``<subject>/mri/`` (cat12 layout) or ``<subject>/anat/`` (bids)."""
    folder = map_path.parent
    return (folder.parent if folder.name in ("mri", "anat") else folder) / "report"


def map_name(path: Path, kind: str) -> str:
    """Subject name of a map, as the preprocessing named it.

    The file stem without the kind prefix (``mwp1sub-01_T1w`` -> ``sub-01_T1w``); for a map of
    the bids layout (``sub-01_space-..._desc-modulated_probseg``) the name of the subject's
    preprocessing report with the same entities (``report/sub-01_T1w.json``), else the entities.
    """
    stem = image_stem(path)
    bids = bids_map_kind(stem)
    if bids is not None:
        entities = bids_entities(bids[0])
        reports = [p.stem for p in sorted(_report_dir(path).glob("*.json"))
                   if not p.stem.startswith("cat_") and bids_entities(p.stem) == entities]
        return reports[0] if len(reports) == 1 else bids[0]
    return stem[len(kind):] if stem.startswith(kind) else stem


def run_qc(maps: Sequence[str | os.PathLike], out: str | os.PathLike, *, settings: QcConfig | None = None,
           kind: str = "mwp1", quality: pd.DataFrame | None = None, device: str = "cpu",
           mask_threshold: float = 0.1, links_from: str | os.PathLike | None = None) -> dict:
    """Correlate every subject's map with all others and flag outliers.

    Parameters
    ----------
    maps : sequence of path
        Modulated GM maps (mwp1) on one grid, at least 3.
    out : path
        Output folder (created).
    settings : QcConfig, optional
        ``sd_threshold`` (k of ``mean - k SD``) and ``exclude_flagged``.
    kind : str
        Map kind prefix stripped from file names to name subjects.
    quality : pandas.DataFrame, optional
        Per-subject figures to add to ``qc.csv`` (e.g. ``preprocess/volumes.csv``), joined on
        its ``name`` column.
    device : str
        Torch device of the correlation products.
    mask_threshold : float
        Voxels where the mean map exceeds this value are correlated.
    links_from : path, optional
        The folder the ``qc_image`` links are relative to: where ``qc.csv`` will finally sit
        (default ``out``; a study writes into a temporary folder that then replaces ``OUT/qc``).

    Returns
    -------
    dict
        The content of ``qc.json``.
    """
    settings = settings if settings is not None else QcConfig()
    out = Path(out)
    paths = [Path(p) for p in maps]
    names = [map_name(p, kind) for p in paths]
    masked = load_maps(paths, mask_threshold=mask_threshold)
    data = masked.data
    chunks = (data[:, i:i + CHUNK_VOXELS] for i in range(0, data.shape[1], CHUNK_VOXELS))
    corr = correlation_matrix(chunks, device=torch.device(device))
    result = sample_homogeneity(corr, sd_threshold=settings.sd_threshold)

    table = pd.DataFrame({"name": names, "path": [str(p) for p in paths],
                          "mean_correlation": result.mean_correlation.cpu().numpy(),
                          "zscore": result.zscore.cpu().numpy(),
                          "flagged": result.flagged.cpu().numpy()})
    base = Path(links_from) if links_from is not None else out
    ratings = pd.DataFrame([subject_quality(p, n, base) for p, n in zip(paths, names, strict=True)])
    table = pd.concat([table, ratings], axis=1)
    if quality is not None and "name" in quality.columns:
        extra = quality.drop(columns=[c for c in quality.columns if c in table.columns and c != "name"])
        table = table.merge(extra, on="name", how="left")
    with atomic_path(out / "qc.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out / "correlation.csv") as tmp:
        pd.DataFrame(corr.cpu().numpy(), index=names, columns=names).to_csv(tmp, index_label="name")
    fig_path = out / "homogeneity.png"
    homogeneity_figure(names, result.mean_correlation.cpu().numpy(), result.threshold, fig_path)
    summary = {
        "n_subjects": len(paths),
        "n_voxels": int(data.shape[1]),
        "kind": kind,
        "sd_threshold": settings.sd_threshold,
        "exclude_flagged": settings.exclude_flagged,
        "mean_of_mean_correlation": float(result.mean_correlation.mean()),
        "threshold": result.threshold,
        "flagged": [n for n, f in zip(names, result.flagged.tolist(), strict=True) if f],
        "low_grade_percent": LOW_GRADE_PERCENT,
        "review": review_list(table),
        "files": {"table": "qc.csv", "correlation": "correlation.csv", "figure": "homogeneity.png"},
    }
    write_json(out / "qc.json", summary)
    return summary
