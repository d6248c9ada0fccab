"""``vbmkit compare``: agreement of vbmkit's outputs with CAT12's or SPM12's (or a second vbmkit run).

Orchestration only: files are found and read through :mod:`vbmkit.io` (``cat12``, ``spm``,
``catroi``, ``records``), every number comes from :mod:`vbmkit.stats.agreement`, the statistics
from :func:`vbmkit.workflows.glm.run_glm` and the page from :mod:`vbmkit.report.compare_report`.

Three levels, each optional (what is missing is listed under ``missing`` in metrics.json and is
never fatal unless nothing at all can be compared):

1. subjects (matched by the name in the file names, e.g. ``sub-01_T1w``): Dice of the p0 label
   maps (or of SPM12's c1/c2/c3 after hard labelling), r of mwp1 and mwp2, TIV and volumes;
2. ROI volumes (catROI XML or long tables): r, ICC(2,1), Bland-Altman per region and tissue;
3. contrasts: the same GLM settings (one :class:`~vbmkit.config.GlmConfig`) on both sets of
   smoothed maps (same subjects in the same order, same seed, so the same subsample draws), then r
   of the median t-maps within the common mask, max |t| and the Dice of suprathreshold voxels; or
   r against SPM's own spmT maps of the same name (:mod:`vbmkit.workflows.compare.glm`). In a study
   the vbmkit side is the study's own ``OUT/glm`` (``glm_ours``), not fitted again.

Modules: ``run`` (this entry point, ROI level, files), ``subjects`` (per-subject level),
``pairs`` (reading both sides onto one grid, volumes, ROI tables), ``glm`` (contrast level).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vbmkit.config import GlmConfig
from vbmkit.errors import VbmkitError
from vbmkit.io.atomic import write_json, write_text
from vbmkit.io.cat12 import find_outputs
from vbmkit.io.ownership import OwnedFolder, check_claimable, claim
from vbmkit.io.spm import find_segmentations
from vbmkit.stats import agreement as ag
from vbmkit.workflows.compare.glm import compare_contrasts
from vbmkit.workflows.compare.pairs import our_roi_table, reference_roi_table, worst_subject_slices
from vbmkit.workflows.compare.subjects import finite, map_summary, study_fwhm, subject_metrics

#: Metrics that compare a subject's maps, with their definitions (also written to metrics.json).
DEFINITIONS = {
    "dice_<tissue>": "Dice of hard labels: p0 rounded to the nearest class (CAT12/vbmkit) or the most "
                     "probable class of c1/c2/c3 with background 1 - sum (SPM12)",
    "prob_dice_<tissue>": "2 sum(p q) / (sum p + sum q) of the partial-volume tissue fractions",
    "r_mwp1 / r_mwp2": "Pearson r within the voxels where the mean of the two maps > 0.1 and neither is NaN "
                       "(no data), on the grid with the larger voxels (the other map resampled trilinearly)",
    "r_s<fwhm>mwp1 / r_s<fwhm>mwp2": "the same r of the smoothed maps: s<fwhm>mwp vs s<fwhm>mwp (CAT12) or "
                                     "s<fwhm>mwc (SPM12) files when both exist, else both raw maps smoothed with "
                                     "the study's FWHM on the common grid (NaN set to 0 first, masked after)",
    "roi icc": "ICC(2,1): two-way random effects, absolute agreement, single measure (Shrout & Fleiss); "
               "icc_consistency is ICC(3,1)",
    "roi mean_diff_ml": "Bland-Altman mean of ours - reference (mL); loa = mean -/+ 1.96 SD",
    "contrasts r_median_t": "Pearson r of the two median t-maps (subsamples) within the intersection of "
                            "the two GLM masks",
    "contrasts dice_suprathreshold": "Dice of the voxels with t > the GLM threshold (uncorrected p = 0.001 "
                                     "at the subsample df) in both maps, one-sided",
}



def _roi_metrics(ours_long: pd.DataFrame, ref_long: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Per region and tissue: r, ICC(2,1), ICC(3,1), Bland-Altman; and the paired table."""
    keys = ["subject", "region", "tissue"]
    a = ours_long[keys + ["volume_ml"]].rename(columns={"volume_ml": "ours_ml"})
    b = ref_long[keys + ["volume_ml"]].rename(columns={"volume_ml": "reference_ml"})
    paired = a.merge(b, on=keys, how="inner").dropna()
    paired = paired[paired["tissue"].isin(["gm", "wm"])]
    out: dict[str, dict] = {}
    for (region, tissue), g in paired.groupby(["region", "tissue"], sort=False):
        if len(g) < 3:
            continue
        x = torch.tensor(g["ours_ml"].to_numpy(dtype=float, copy=True), dtype=torch.float64)
        y = torch.tensor(g["reference_ml"].to_numpy(dtype=float, copy=True), dtype=torch.float64)
        ba = ag.bland_altman(x, y)
        ratings = torch.stack([x, y], dim=-1)
        out.setdefault(str(region), {})[str(tissue)] = {
            "r": finite(ag.pearson_r(x, y)), "icc": finite(ag.icc(ratings, kind="2,1")),
            "icc_consistency": finite(ag.icc(ratings, kind="3,1")), "mean_diff_ml": finite(ba["mean_diff"]),
            "loa_low_ml": finite(ba["loa_low"]), "loa_high_ml": finite(ba["loa_high"]), "n": int(len(g)),
        }
    return out, paired


def run_compare(ours: str | os.PathLike, *, cat12: str | os.PathLike | None = None,
                spm: str | os.PathLike | None = None, out: str | os.PathLike,
                covariates: str | os.PathLike | pd.DataFrame | None = None, id_column: str = "participant_id",
                glm: GlmConfig | None = None, glm_ours: str | os.PathLike | None = None, maps: str | None = None,
                device: str = "auto", report: bool = True, progress: bool = False,
                reference_note: str | None = None) -> dict[str, Any]:
    """Compare a vbmkit output folder with a CAT12 or SPM12 folder; write metrics, CSVs and report.

    Parameters
    ----------
    ours : path
        vbmkit preprocess output (``<ours>/<name>/mri/p0<name>.nii.gz``, ``report/<name>.json``)
        or any folder in CAT12's naming (e.g. a second vbmkit run).
    cat12, spm : path, optional
        The reference: a CAT12 output folder (either layout) or an SPM12 folder (segmentations
        and/or a results folder with spmT images). Exactly one.
    out : path
        Output folder: ``metrics.json``, ``subjects.csv``, ``roi.csv``, ``roi_volumes.csv``,
        ``contrasts.csv``, ``report.html`` and the two GLM folders ``glm_ours``, ``glm_<ref>``.
    covariates, id_column : optional
        The covariate table of the per-contrast comparison (skipped without it or ``glm``).
    glm : GlmConfig, optional
        Every GLM setting of the per-contrast comparison (maps, formula, contrasts, subsamples,
        fraction, stratify, seed, mask, mask_threshold, threshold, ...); both sides use all of them.
        ``glm.maps`` is the map kind analysed (``s6mwp1``; SPM12 equivalents ``s*mwc1``).
    glm_ours : path, optional
        A finished ``vbmkit glm`` folder of the vbmkit maps fitted with exactly ``glm`` (a study's
        ``OUT/glm``): reused instead of fitting the vbmkit side again.
    maps : str, optional
        The map kind whose FWHM the smoothed per-subject r uses; default ``glm.maps``, else ``s6mwp1``.
    device :
        ``auto``, ``cpu`` or ``cuda``.
    report : bool
        Also write ``report.html``.
    reference_note : str, optional
        What the reference really is, shown in the report's title and kept in metrics.json
        (e.g. "synthetic: vbmkit's maps shifted by one voxel with noise" for a benchmark whose
        reference only has CAT12's layout).

    Returns
    -------
    dict
        The content of ``metrics.json``.

    Raises
    ------
    VbmkitError
        When no reference or two are given, when a folder does not exist, or when nothing at all
        can be compared (no matched subject and no contrast).
    """
    if (cat12 is None) == (spm is None):
        raise VbmkitError("compare: expected exactly one reference, --cat12 DIR or --spm DIR; got "
                          f"{'both' if cat12 is not None else 'neither'}")
    kind = "cat12" if cat12 is not None else "spm"
    ref_root = Path(cat12 if cat12 is not None else spm)  # type: ignore[arg-type]
    out = Path(out)
    check_claimable(out, command="compare")
    ours_subjects = find_outputs(ours, report_json=True)
    if kind == "cat12":
        ref_subjects = find_outputs(ref_root, report_json=True)
    else:
        ref_subjects = find_segmentations(ref_root)
    ours_subjects = {k: v for k, v in ours_subjects.items() if v.maps}
    names = sorted(set(ours_subjects) & set(ref_subjects))
    missing: list[str] = []
    metrics: dict[str, Any] = {
        "reference": {"kind": kind, "path": str(ref_root), "note": reference_note}, "ours": str(ours),
        "matched": names,
        "unmatched": {"ours_only": sorted(set(ours_subjects) - set(ref_subjects)),
                      "reference_only": sorted(set(ref_subjects) - set(ours_subjects))},
        "definitions": DEFINITIONS, "subjects": {}, "roi": {}, "contrasts": {}, "missing": missing,
    }
    fwhm = study_fwhm(maps if maps is not None else glm.maps if glm is not None else "s6mwp1")
    for name in names:
        metrics["subjects"][name] = subject_metrics(ours_subjects[name], ref_subjects[name], kind=kind,
                                                     fwhm=fwhm, missing=missing)
    metrics.update(map_summary(metrics["subjects"], fwhm, [ref_subjects[n] for n in names], kind=kind))

    with claim(out, command="compare") as owned:
        owned.start()
        owned.register("roi_ours/", "roi_reference/", "glm_ours/", f"glm_{kind}/")
        metrics = _compare_into(owned, metrics, ours, ours_subjects, ref_subjects, names, kind=kind,
                                ref_root=ref_root, covariates=covariates, id_column=id_column, glm=glm,
                                glm_ours=glm_ours, device=device, report=report, progress=progress)
        owned.finish()
    return metrics


def _compare_into(owned: OwnedFolder, metrics: dict[str, Any], ours, ours_subjects, ref_subjects, names, *,
                  kind: str, ref_root: Path, covariates, id_column: str, glm: GlmConfig | None, glm_ours,
                  device: str, report: bool, progress: bool) -> dict[str, Any]:
    """ROI and contrast comparisons and every file of ``run_compare``, written into the claimed folder."""
    out = owned.path
    missing = metrics["missing"]
    ours_roi = our_roi_table(ours, {n: ours_subjects[n] for n in names}, out=out / "roi_ours")
    ref_roi = (reference_roi_table({n: ref_subjects[n] for n in names}, out=out / "roi_reference")
               if kind == "cat12" else None)
    paired = pd.DataFrame(columns=["subject", "region", "tissue", "ours_ml", "reference_ml"])
    if ours_roi is not None and ref_roi is not None:
        metrics["roi"], paired = _roi_metrics(ours_roi, ref_roi)
        if not metrics["roi"]:
            missing.append("ROI volumes: fewer than 3 subjects with volumes on both sides (no r / ICC)")
    else:
        parts = (["no vbmkit ROI table (roi_long.csv, catROI_<name>.xml, or mwp maps vbmkit roi can measure)"]
                 if ours_roi is None else [])
        parts += ([f"no {kind} ROI volumes (label/catROI_<name>.xml)"] if ref_roi is None else [])
        missing.append("ROI volumes: " + "; ".join(parts))

    extras: dict[str, Any] = {}
    if covariates is not None and glm is not None:
        metrics["contrasts"], extras = compare_contrasts(
            [ours_subjects[n] for n in names], [ref_subjects[n] for n in names],
            ours_all=list(ours_subjects.values()), ref_root=ref_root, kind=kind, covariates=covariates,
            id_column=id_column, settings=glm, glm_ours=Path(glm_ours) if glm_ours is not None else None,
            device=device, out=out, missing=missing, progress=progress)
    else:
        missing.append("contrasts: no covariates/formula/contrasts given (per-contrast comparison skipped)")
    if not metrics["subjects"] and not metrics["roi"] and not any(
            c.get("r_median_t") is not None for c in metrics["contrasts"].values()):
        raise VbmkitError(f"compare: expected subjects present in both {ours} and {ref_root} (matched by the "
                          f"name in the file names, e.g. p0sub-01_T1w.nii -> sub-01_T1w) or a contrast to "
                          f"compare; vbmkit has {list(ours_subjects)[:5]}, the reference "
                          f"{list(ref_subjects)[:5]}")
    for msg in missing:
        warnings.warn(msg, stacklevel=3)
    owned.register("subjects.csv", "roi.csv", "roi_volumes.csv", "contrasts.csv", "metrics.json",
                   *(["report.html"] if report else []))
    _write_tables(out, metrics, paired)
    write_json(out / "metrics.json", metrics)
    if report:
        # matplotlib (imported by the report module) is slow to load: only when a report is asked for
        from vbmkit.report.compare_report import write_compare_report

        worst = worst_subject_slices(metrics["subjects"], ours_subjects, ref_subjects, kind=kind)
        write_compare_report(out / "report.html", metrics, paired=paired, tmaps=extras.get("tmaps", {}),
                             worst=worst)
    return metrics


def _write_tables(out: Path, metrics: dict, paired: pd.DataFrame) -> None:
    """subjects.csv, roi.csv, roi_volumes.csv and contrasts.csv with every number of the report."""
    subjects = pd.DataFrame.from_dict(metrics["subjects"], orient="index")
    subjects.index.name = "subject"
    write_text(out / "subjects.csv", subjects.reset_index().to_csv(index=False))
    rows = [{"region": r, "tissue": t, **v} for r, d in metrics["roi"].items() for t, v in d.items()]
    write_text(out / "roi.csv", pd.DataFrame(rows).to_csv(index=False))
    write_text(out / "roi_volumes.csv", paired.to_csv(index=False))
    rows = [{"contrast": c, **{k: v for k, v in d.items() if not isinstance(v, (dict, list))}}
            for c, d in metrics["contrasts"].items()]
    write_text(out / "contrasts.csv", pd.DataFrame(rows).to_csv(index=False))

