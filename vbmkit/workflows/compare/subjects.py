"""Per-subject part of ``vbmkit compare``: tissue overlap, r of the modulated maps, volumes.

Orchestration only: the maps of a matched pair are read through :mod:`vbmkit.io`, brought to
one grid (:mod:`vbmkit.workflows.compare.pairs`) and compared with :mod:`vbmkit.stats.agreement`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from vbmkit.io.nifti import load_grid, load_map
from vbmkit.io.spm import describe_grid
from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.stats import agreement as ag
from vbmkit.workflows.compare.pairs import (
    coarser_grid,
    common_grid_pair,
    our_probabilities,
    our_volumes,
    spm_probabilities,
)


def finite(x: Any) -> float | None:
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
        m[f"r_{ours_kind}"] = finite(agr["r"])
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
    m[key] = finite(agr["r"])
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
    valid = torch.isfinite(data)
    out = smooth_fwhm(torch.where(valid, data, 0.0), fwhm_mm, tuple(grid.voxel_size))
    return torch.where(valid, out, torch.full_like(out, float("nan")))


def subject_metrics(ours: Any, ref: Any, *, kind: str, fwhm: str, missing: list[str]) -> dict[str, Any]:
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
            m[f"{metric}_{tissue}"] = finite(res[metric][k]) if res is not None else None
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
            csf, gm, wm = (finite(ag.volume_ml(pb.data[i].nan_to_num(0.0), pb.grid.voxel_volume_ml))
                           for i in range(3))
            vr = {"csf": csf, "gm": gm, "wm": wm, "tiv": sum(v for v in (csf, gm, wm) if v is not None)}
    for key in ("tiv", "gm", "wm", "csf"):
        m[f"{key}_ours_ml"] = finite(vo.get(key))
        m[f"{key}_{label}_ml"] = finite(vr.get(key))
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


def map_summary(subjects: Mapping[str, Mapping[str, Any]], fwhm: str, refs: list[Any], *,
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
            grid = {"file": str(ref.maps[ref_kind]), **describe_grid(load_grid(ref.maps[ref_kind]))}
            break
    return {"medians": medians, "smoothed": smoothed, "reference_grid": grid}
