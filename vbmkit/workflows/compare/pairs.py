"""Helpers of ``vbmkit compare``: load the two sides of a pair on one grid, volumes, ROI tables.

Orchestration only (reading, choosing the grid, calling :func:`vbmkit.space.resample`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vbmkit.io.cat12 import SubjectOutputs, read_cat12_report
from vbmkit.io.catroi import read_catroi_xml
from vbmkit.io.nifti import load_map
from vbmkit.io.records import read_json
from vbmkit.space import Grid, resample
from vbmkit.stats import agreement as ag
from vbmkit.workflows.roi import run_roi


@dataclass(frozen=True, eq=False)
class Maps:
    """(C, X, Y, Z) or (X, Y, Z) values on a RAS grid (several tissue maps of one subject)."""

    data: torch.Tensor
    grid: Grid


def coarser_grid(a: Grid, b: Grid) -> Grid:
    """The grid with the larger voxels (``a`` on a tie): interpolating onto it invents no detail."""
    return b if b.voxel_volume_ml > a.voxel_volume_ml * (1 + 1e-6) else a


def on_grid(x: Any, grid: Grid) -> torch.Tensor:
    """``x.data`` ((C,) X, Y, Z) on ``grid``: as is when the grids match, else trilinear resampling."""
    if x.grid.matches(grid):
        return x.data
    data = x.data
    moved = resample(data[None] if data.ndim == 4 else data, x.grid, grid)
    return moved[0] if data.ndim == 4 else moved


def common_grid_pair(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Bring two maps (``.data``, ``.grid``) onto :func:`coarser_grid` of the two.

    Resampling is trilinear (p0 label maps are partial-volume maps, so this keeps their meaning).

    Returns
    -------
    (data_a, data_b, resampled)
        Tensors of one shape; ``resampled`` tells whether either was moved.
    """
    grid = coarser_grid(a.grid, b.grid)
    return on_grid(a, grid), on_grid(b, grid), not a.grid.matches(b.grid)


def _stack(paths: list[Path]) -> Maps:
    vols = [load_map(p) for p in paths]  # NaN: no data, left out by the callers
    for p, v in zip(paths[1:], vols[1:], strict=True):
        v.grid.check_same(vols[0].grid, names=(str(paths[0]), str(p)))
    return Maps(torch.stack([v.data for v in vols]), vols[0].grid)


def our_probabilities(sub: SubjectOutputs) -> Maps | None:
    """(3, X, Y, Z) CSF, GM, WM fractions: p3, p1, p2 when written, else read from p0."""
    if all(k in sub.maps for k in ("p1", "p2", "p3")):
        return _stack([sub.maps["p3"], sub.maps["p1"], sub.maps["p2"]])
    if "p0" in sub.maps:
        vol = load_map(sub.maps["p0"])
        probs = ag.tissue_probabilities(vol.data.nan_to_num(0.0)).float()
        return Maps(torch.where(torch.isfinite(vol.data), probs, float("nan")), vol.grid)
    return None


def spm_probabilities(sub: SubjectOutputs) -> Maps | None:
    """(3, X, Y, Z) CSF, GM, WM probabilities from SPM12's c3, c1, c2 (None when one is missing)."""
    if all(k in sub.maps for k in ("c1", "c2", "c3")):
        return _stack([sub.maps["c3"], sub.maps["c1"], sub.maps["c2"]])
    return None


def our_volumes(sub: SubjectOutputs) -> dict[str, float]:
    """TIV, GM, WM, CSF in mL from vbmkit's ``report/<name>.json`` (or a CAT12 xml); {} when absent.

    Tolerant of field names: ``volumes_ml.{tiv,gm,wm,csf}`` (vbmkit) or ``*_ml`` keys.
    """
    if sub.report is None:
        return {}
    if sub.report.suffix == ".xml":
        rep = read_cat12_report(sub.report)
        return {"tiv": rep.tiv_ml, "gm": rep.gm_ml, "wm": rep.wm_ml, "csf": rep.csf_ml}
    obj = read_json(sub.report) or {}
    vols = obj.get("volumes_ml", obj)
    out = {}
    for key in ("tiv", "gm", "wm", "csf"):
        for cand in (key, f"{key}_ml", key.upper()):
            if isinstance(vols, Mapping) and isinstance(vols.get(cand), (int, float)):
                out[key] = float(vols[cand])
                break
    return out


def _run_roi(subjects: Mapping[str, SubjectOutputs], out: Path) -> pd.DataFrame | None:
    """ROI volumes of the mwp1/mwp2 maps with ``vbmkit roi`` (template-space, LPBA40)."""
    paths = [s.maps[k] for s in subjects.values() for k in ("mwp1", "mwp2") if k in s.maps]
    if not paths:
        return None
    try:
        run_roi(paths, out=out, atlas="lpba40", progress=False)
    except Exception as exc:  # ROI volumes are optional: report and go on
        warnings.warn(f"ROI volumes of {len(paths)} maps could not be measured: {exc}", stacklevel=3)
        return None
    return pd.read_csv(out / "roi_long.csv")


def our_roi_table(root: str | Path, subjects: Mapping[str, SubjectOutputs], *, out: Path) -> pd.DataFrame | None:
    """vbmkit's ROI volumes: a ``roi_long.csv`` under ``root``, catROI XMLs, or measured now."""
    names = set(subjects)
    for path in sorted(Path(root).rglob("roi_long.csv")):
        table = pd.read_csv(path)
        if {"subject", "region", "tissue", "volume_ml"} <= set(table.columns) and names & set(table["subject"]):
            return table
    table = reference_roi_table(subjects)
    return table if table is not None else _run_roi(subjects, out)


def reference_roi_table(subjects: Mapping[str, SubjectOutputs], *, out: Path | None = None) -> pd.DataFrame | None:
    """CAT12's ``catROI_<name>.xml`` volumes of all subjects (long table), else measured from mwp maps."""
    frames = [read_catroi_xml(s.roi, subject=name) for name, s in subjects.items() if s.roi is not None]
    if frames:
        table = pd.concat(frames, ignore_index=True)
        return table[table["atlas"] == "lpba40"] if "lpba40" in set(table["atlas"]) else table
    return _run_roi(subjects, out) if out is not None else None


def _slices(path: Path) -> list[np.ndarray]:
    """Middle axial, coronal and sagittal slices of a map (RAS), for the report."""
    data = load_map(path, warn=False).data.nan_to_num(0.0).numpy()
    x, y, z = (s // 2 for s in data.shape)
    return [np.rot90(data[:, :, z]), np.rot90(data[:, y, :]), np.rot90(data[x, :, :])]


def worst_subject_slices(subjects: Mapping[str, Mapping[str, Any]], ours: Mapping[str, SubjectOutputs],
                         ref: Mapping[str, SubjectOutputs], *, kind: str, n: int = 3) -> list[dict[str, Any]]:
    """Slices of both p0 (or c1/p1) maps of the ``n`` subjects with the lowest GM Dice."""
    scored = [(v.get("dice_gm"), k) for k, v in subjects.items() if v.get("dice_gm") is not None]
    out = []
    for score, name in sorted(scored)[:n]:
        a_kind, b_kind = ("p0", "p0") if kind == "cat12" else ("p1", "c1")
        if a_kind in ours[name].maps and b_kind in ref[name].maps:
            out.append({"name": name, "dice_gm": score, "ours": _slices(ours[name].maps[a_kind]),
                        "reference": _slices(ref[name].maps[b_kind]), "label": f"{a_kind} vs {b_kind}"})
    return out
