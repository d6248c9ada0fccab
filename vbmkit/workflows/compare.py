"""``vbmkit compare``: agreement of vbmkit's outputs with CAT12's or SPM12's (or a second vbmkit run).

Orchestration only: files are found and read through :mod:`vbmkit.io` (``cat12``, ``spm``,
``catroi``, ``records``), every number comes from :mod:`vbmkit.stats.agreement`, the statistics
from :func:`vbmkit.workflows.glm.run_glm` and the page from :mod:`vbmkit.report.compare_report`.

Three levels, each optional (what is missing is listed under ``missing`` in metrics.json and is
never fatal unless nothing at all can be compared):

1. subjects (matched by the name in the file names, e.g. ``sub-01_T1w``): Dice of the p0 label
   maps (or of SPM12's c1/c2/c3 after hard labelling), r of mwp1 and mwp2, TIV and volumes;
2. ROI volumes (catROI XML or long tables): r, ICC(2,1), Bland-Altman per region and tissue;
3. contrasts: the same design run on both sets of smoothed maps (same subjects in the same order,
   same seed, so the same subsample draws), then r of the median t-maps within the common mask,
   max |t| and the Dice of suprathreshold voxels; or r against SPM's own spmT maps of the same name.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vbmkit.errors import VbmkitError
from vbmkit.io.atomic import write_json, write_text
from vbmkit.io.cat12 import find_outputs
from vbmkit.io.nifti import load_map
from vbmkit.io.ownership import OwnedFolder, check_claimable, claim
from vbmkit.stats import agreement as ag
from vbmkit.workflows.compare_pairs import (
    coarser_grid,
    common_grid_pair,
    our_probabilities,
    our_roi_table,
    our_volumes,
    reference_roi_table,
    spm_probabilities,
)

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


def _f(x: Any) -> float | None:
    """A finite Python float or None."""
    if x is None:
        return None
    v = float(x.item() if hasattr(x, "item") else x)
    return v if np.isfinite(v) else None


def _grid_text(grid: Any) -> str:
    return " x ".join(map(str, grid.shape)) + f", {'/'.join(f'{v:g}' for v in grid.voxel_size.round(3))} mm"


def _map_metrics(ours: Any, ref: Any, ours_kind: str, ref_kind: str, *, fwhm: str, label: str,
                 missing: list[str]) -> dict[str, Any]:
    """r of one pair of modulated maps (``mwp1`` vs ``mwp1``/``mwc1``), raw and smoothed.

    The smoothed pair is ``s<fwhm><kind>`` of both sides when both files exist (each read and
    brought to the common grid); otherwise both raw maps, on the common grid, are smoothed there
    with the same Gaussian (FWHM ``fwhm`` mm; NaN set to 0 first, the result NaN again where the
    input was, so 'no data' stays out of the mask). r is taken where both maps are finite and
    their mean exceeds 0.1 (:func:`vbmkit.stats.agreement.map_agreement`).
    """
    name, m = ours.name, {}
    s_ours, s_ref = f"s{fwhm}{ours_kind}", f"s{fwhm}{ref_kind}"
    key = f"r_{s_ours}"
    raw = None
    if ours_kind in ours.maps and ref_kind in ref.maps:
        va, vb = load_map(ours.maps[ours_kind]), load_map(ref.maps[ref_kind])
        a, b, resampled = common_grid_pair(_f64(va), _f64(vb))
        raw = (a, b, coarser_grid(va.grid, vb.grid))
        agr = ag.map_agreement(a, b)
        m[f"r_{ours_kind}"] = _f(agr["r"])
        m[f"n_voxels_{ours_kind}"] = int(agr["n_voxels"])
        m[f"{ours_kind}_resampled"] = resampled
        m[f"grid_{ours_kind}"] = _grid_text(raw[2])
    else:
        m[f"r_{ours_kind}"] = None
        missing.append(f"{name}: {ours_kind} (vbmkit) or {ref_kind} ({label}) missing")
    if s_ours in ours.maps and s_ref in ref.maps:
        va, vb = load_map(ours.maps[s_ours]), load_map(ref.maps[s_ref])
        a, b, _ = common_grid_pair(_f64(va), _f64(vb))
        grid, source = coarser_grid(va.grid, vb.grid), f"files {s_ours} and {s_ref}"
    elif raw is not None:
        a, b, grid = raw
        a, b = (smooth_masked(x, float(fwhm), grid) for x in (a, b))
        source = f"{ours_kind} and {ref_kind} smoothed with FWHM {fwhm} mm on the common grid"
    else:
        m[key] = None
        return m
    agr = ag.map_agreement(a, b)
    m[key] = _f(agr["r"])
    m[f"n_voxels_{s_ours}"] = int(agr["n_voxels"])
    m[f"grid_{s_ours}"] = _grid_text(grid)
    m[f"{s_ours}_source"] = source
    return m


def _f64(vol: Any) -> Any:
    """The volume in float64, so resampling and smoothing add no float32 rounding to r."""
    return type(vol)(vol.data.to(torch.float64), vol.affine) if hasattr(vol, "affine") else vol


def smooth_masked(data: torch.Tensor, fwhm_mm: float, grid: Any) -> torch.Tensor:
    """Gaussian smoothing (FWHM in mm) of an (X, Y, Z) map whose NaN voxels mean 'no data'.

    NaN is set to 0 before smoothing (the kernel treats it like the space outside the grid, as
    ``spm_smooth`` does), and the result is NaN again where the input was NaN, so those voxels
    stay out of every mask; values near the border of the data are damped like those near the
    border of the grid.
    """
    from vbmkit.preprocess.smooth import smooth_fwhm

    valid = torch.isfinite(data)
    out = smooth_fwhm(torch.where(valid, data, 0.0), fwhm_mm, tuple(grid.voxel_size))
    return torch.where(valid, out, torch.full_like(out, float("nan")))


def _subject_metrics(ours: Any, ref: Any, *, kind: str, fwhm: str, missing: list[str]) -> dict[str, Any]:
    """All per-subject numbers of one matched pair (SubjectOutputs of both sides)."""
    label = kind  # the reference's name in the metric keys (tiv_cat12_ml, tiv_spm_ml)
    m: dict[str, Any] = {}
    name = ours.name
    pb = None
    # Tissue overlap.
    if kind == "cat12":
        if "p0" in ours.maps and "p0" in ref.maps:
            a, b, resampled = common_grid_pair(load_map(ours.maps["p0"]), load_map(ref.maps["p0"]))
            valid = torch.isfinite(a) & torch.isfinite(b)  # NaN: no data on either side -> left out
            res = ag.label_agreement(a.nan_to_num(0.0), b.nan_to_num(0.0), mask=valid)
            m["p0_resampled"] = resampled
        else:
            res = None
            missing.append(f"{name}: p0 missing on the {'reference' if 'p0' in ours.maps else 'vbmkit'} side")
    else:
        pa, pb = our_probabilities(ours), spm_probabilities(ref)
        if pa is not None and pb is not None:
            a, b, resampled = common_grid_pair(pa, pb)
            valid = (torch.isfinite(a) & torch.isfinite(b)).all(dim=0)  # NaN in any map: voxel left out
            res = ag.probability_agreement(torch.where(valid, a, 0.0), torch.where(valid, b, 0.0))
            m["c_resampled"] = resampled
        else:
            res = None
            missing.append(f"{name}: native tissue maps missing (p1/p2/p3 or p0 for vbmkit, c1/c2/c3 for SPM12)")
    for k, tissue in enumerate(ag.TISSUES):
        for metric in ("dice", "prob_dice", "jaccard"):
            m[f"{metric}_{tissue}"] = _f(res[metric][k]) if res is not None else None
    # Warped, modulated maps, raw and smoothed with the study's kernel.
    ref_kinds = {"mwp1": "mwp1", "mwp2": "mwp2"} if kind == "cat12" else {"mwp1": "mwc1", "mwp2": "mwc2"}
    for ours_kind, ref_kind in ref_kinds.items():
        m.update(_map_metrics(ours, ref, ours_kind, ref_kind, fwhm=fwhm, label=label, missing=missing))
    # TIV and tissue volumes (mL).
    vo = our_volumes(ours)
    if kind == "cat12":
        vr = our_volumes(ref)  # cat_<name>.xml, or the json report of a second vbmkit run
        if not vr:
            missing.append(f"{name}: report/cat_{name}.xml missing (no TIV, volumes)")
    else:
        vr = {}
        if pb is not None:
            csf, gm, wm = (_f(ag.volume_ml(pb.data[i].nan_to_num(0.0), pb.grid.voxel_volume_ml))
                           for i in range(3))
            vr = {"csf": csf, "gm": gm, "wm": wm, "tiv": sum(v for v in (csf, gm, wm) if v is not None)}
    for key in ("tiv", "gm", "wm", "csf"):
        m[f"{key}_ours_ml"] = _f(vo.get(key))
        m[f"{key}_{label}_ml"] = _f(vr.get(key))
    return m


#: Why raw and smoothed r differ (report and metrics.json).
RAW_VS_SMOOTHED = ("Raw r compares two registrations voxel by voxel, so small shifts of sharp tissue edges keep it "
                   "low (0.2 between SPM12 and another tool is common), while r of the maps smoothed with the "
                   "analysis kernel measures the agreement the statistics see, as the deepmriprep paper "
                   "compares smoothed maps and t-maps.")


def study_fwhm(maps: str) -> str:
    """The FWHM (mm, as written in the kind) of the analysed maps: ``s6mwp1`` -> ``"6"``; 6 by default."""
    m = re.match(r"^s([\d.]+)m?w", maps)
    return m.group(1) if m else "6"


def _median(values: list[Any]) -> float | None:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return float(np.median(v)) if v.size else None


def _map_summary(subjects: Mapping[str, Mapping[str, Any]], fwhm: str, refs: list[Any], *,
                 kind: str) -> dict[str, Any]:
    """``medians`` of the per-subject figures, ``smoothed`` (FWHM, grid, mask, note), the reference grid."""
    keys = [f"{k}_{t}" for k in ("dice", "prob_dice") for t in ag.TISSUES]
    keys += ["r_mwp1", "r_mwp2", f"r_s{fwhm}mwp1", f"r_s{fwhm}mwp2"]
    medians = {k: _median([s.get(k) for s in subjects.values()]) for k in keys}
    sources = sorted({s[f"s{fwhm}mwp{t}_source"] for s in subjects.values() for t in (1, 2)
                      if f"s{fwhm}mwp{t}_source" in s})
    grids = sorted({s[f"grid_s{fwhm}mwp{t}"] for s in subjects.values() for t in (1, 2)
                    if f"grid_s{fwhm}mwp{t}" in s})
    smoothed = {"fwhm_mm": float(fwhm), "sources": sources, "grids": grids,
                "mask": "voxels finite (not NaN) in both smoothed maps whose mean exceeds 0.1",
                "note": RAW_VS_SMOOTHED}
    grid = None
    ref_kind = "mwp1" if kind == "cat12" else "mwc1"
    for ref in refs:
        if ref_kind in ref.maps:
            from vbmkit.io.nifti import load_grid
            from vbmkit.io.spm import describe_grid

            grid = {"file": str(ref.maps[ref_kind]), **describe_grid(load_grid(ref.maps[ref_kind]))}
            break
    return {"medians": medians, "smoothed": smoothed, "reference_grid": grid}


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
            "r": _f(ag.pearson_r(x, y)), "icc": _f(ag.icc(ratings, kind="2,1")),
            "icc_consistency": _f(ag.icc(ratings, kind="3,1")), "mean_diff_ml": _f(ba["mean_diff"]),
            "loa_low_ml": _f(ba["loa_low"]), "loa_high_ml": _f(ba["loa_high"]), "n": int(len(g)),
        }
    return out, paired


def run_compare(ours: str | os.PathLike, *, cat12: str | os.PathLike | None = None,
                spm: str | os.PathLike | None = None, out: str | os.PathLike,
                covariates: str | os.PathLike | pd.DataFrame | None = None, id_column: str = "participant_id",
                formula: str | None = None, contrasts: Mapping[str, Any] | None = None,
                maps: str = "s6mwp1", subsamples: int = 100, fraction: float = 0.8, seed: int = 0,
                device: str = "auto", report: bool = True, progress: bool = False) -> dict[str, Any]:
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
    covariates, id_column, formula, contrasts : optional
        The study design for the per-contrast comparison (skipped when any is missing).
    maps : str
        Map kind analysed by the GLM on both sides (``s6mwp1``; SPM12 equivalents ``s*mwc1``).
    subsamples, fraction, seed, device :
        As ``vbmkit glm``; both sides use the same values.
    report : bool
        Also write ``report.html``.

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
        from vbmkit.io.spm import find_segmentations

        ref_subjects = find_segmentations(ref_root)
    ours_subjects = {k: v for k, v in ours_subjects.items() if v.maps}
    names = sorted(set(ours_subjects) & set(ref_subjects))
    missing: list[str] = []
    metrics: dict[str, Any] = {
        "reference": {"kind": kind, "path": str(ref_root)}, "ours": str(ours),
        "matched": names,
        "unmatched": {"ours_only": sorted(set(ours_subjects) - set(ref_subjects)),
                      "reference_only": sorted(set(ref_subjects) - set(ours_subjects))},
        "definitions": DEFINITIONS, "subjects": {}, "roi": {}, "contrasts": {}, "missing": missing,
    }
    fwhm = study_fwhm(maps)
    for name in names:
        metrics["subjects"][name] = _subject_metrics(ours_subjects[name], ref_subjects[name], kind=kind,
                                                     fwhm=fwhm, missing=missing)
    metrics.update(_map_summary(metrics["subjects"], fwhm, [ref_subjects[n] for n in names], kind=kind))

    with claim(out, command="compare") as owned:
        owned.start()
        owned.register("roi_ours/", "roi_reference/", "glm_ours/", f"glm_{kind}/")
        metrics = _compare_into(owned, metrics, ours, ours_subjects, ref_subjects, names, kind=kind,
                                ref_root=ref_root, covariates=covariates, id_column=id_column, formula=formula,
                                contrasts=contrasts, maps=maps, subsamples=subsamples, fraction=fraction,
                                seed=seed, device=device, report=report, progress=progress)
        owned.finish()
    return metrics


def _compare_into(owned: OwnedFolder, metrics: dict[str, Any], ours, ours_subjects, ref_subjects, names, *,
                  kind: str, ref_root: Path, covariates, id_column, formula, contrasts, maps, subsamples,
                  fraction, seed, device, report: bool, progress: bool) -> dict[str, Any]:
    """ROI and contrast comparisons and every file of ``run_compare``, written into the claimed folder."""
    from vbmkit.workflows.compare_glm import compare_contrasts

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
    if covariates is not None and formula and contrasts:
        metrics["contrasts"], extras = compare_contrasts(
            [ours_subjects[n] for n in names], [ref_subjects[n] for n in names],
            ours_all=list(ours_subjects.values()), ref_root=ref_root, kind=kind,
            covariates=covariates, id_column=id_column, formula=formula, contrasts=dict(contrasts), maps=maps,
            subsamples=subsamples, fraction=fraction, seed=seed, device=device, out=out,
            missing=missing, progress=progress)
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
        from vbmkit.report.compare_report import write_compare_report
        from vbmkit.workflows.compare_pairs import worst_subject_slices

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

