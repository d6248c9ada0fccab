"""Per-contrast part of ``vbmkit compare``: the same design on both map sets, then agreement of t-maps.

Both sides go through :func:`vbmkit.workflows.glm.run_glm` with one :class:`GlmConfig`, the
caller's, whole (formula, contrasts, stratify, mask, mask_threshold, threshold, subsamples,
fraction, seed, ...). Only subjects that have the analysed map on both sides are given, and
run_glm orders them by the covariate table, so both runs see the same N subjects in the same
order; ``draw_subsamples(N, k, fraction, strata, seed)`` depends on nothing else, so the K
subsamples are identical. ``same_draws`` in metrics.json records the check (the subject lists of
both summaries are equal). With ``glm_ours`` (a study's ``OUT/glm``, fitted with the same
settings) the vbmkit side is read from there, and the reference side is fitted on the subjects
of that GLM.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from vbmkit.config import GlmConfig
from vbmkit.errors import CovariateError, DesignError, VbmkitError
from vbmkit.io.cat12 import SubjectOutputs
from vbmkit.io.nifti import load_map
from vbmkit.io.records import read_json
from vbmkit.io.spm import find_results
from vbmkit.stats import agreement as ag
from vbmkit.stats.inference import p_to_t
from vbmkit.workflows.compare.pairs import Maps, coarser_grid, on_grid
from vbmkit.workflows.glm.run import run_glm


def _reference_kind(maps: str, ref: list[SubjectOutputs], kind: str) -> str | None:
    """The reference's map kind for ours: the same name (CAT12), or ``s<f>mwc<t>`` for ``s<f>mwp<t>`` (SPM12)."""
    if kind == "cat12":
        return maps
    m = re.match(r"^(s[\d.]+)?m?wp([123])$", maps)
    if m is None:
        return None
    tissue = m.group(2)
    kinds = {k for s in ref for k in s.maps}
    exact = maps.replace("wp", "wc")
    if exact in kinds:
        return exact
    smoothed = sorted(k for k in kinds if re.match(rf"^s[\d.]+mwc{tissue}$", k))
    return smoothed[0] if m.group(1) and smoothed else None


def _load(path: Path) -> Maps:
    """A statistic or mask image; NaN (SPM's 'outside the analysis mask') becomes 0."""
    vol = load_map(path, warn=False)
    return Maps(vol.data.nan_to_num(nan=0.0), vol.grid)


def _stat_file(folder: Path, summary: dict, name: str) -> Path:
    files = summary["contrasts"][name]["files"]
    return folder / files.get("median", files["stat"])


def _finite(x: Any) -> float | None:
    """A Python float, or None for NaN (e.g. Dice when no voxel passes in either map)."""
    v = float(x)
    return v if math.isfinite(v) else None


def _agreement(a: Maps, b: Maps, mask_a: Maps, mask_b: Maps, thr_a: float, thr_b: float) -> dict[str, Any]:
    """r, max |t| and suprathreshold Dice of two t-maps within the intersection of their masks."""
    grid = coarser_grid(a.grid, b.grid)
    ta, tb = on_grid(a, grid), on_grid(b, grid)
    mask = (on_grid(mask_a, grid) > 0.5) & (on_grid(mask_b, grid) > 0.5)
    return {
        "r_median_t": _finite(ag.pearson_r(ta, tb, mask=mask, dim=None)),
        "max_abs_t_ours": float(a.data.abs().max()), "max_abs_t_reference": float(b.data.abs().max()),
        "dice_suprathreshold": _finite(ag.suprathreshold_dice(ta, tb, thr_a, threshold_b=thr_b, mask=mask,
                                                             dim=None)),
        "threshold_ours": thr_a, "threshold_reference": thr_b, "n_voxels_common_mask": int(mask.sum()),
        "resampled": not a.grid.matches(b.grid), "_maps": (torch.where(mask, ta, 0.0),
                                                         torch.where(mask, tb, 0.0), grid.affine),
    }


def compare_contrasts(ours: list[SubjectOutputs], ref: list[SubjectOutputs], *, ours_all: list[SubjectOutputs],
                      ref_root: Path, kind: str, covariates: Any, id_column: str, settings: GlmConfig,
                      glm_ours: Path | None = None, device: str, out: Path, missing: list[str],
                      progress: bool = False) -> tuple[dict[str, dict], dict[str, Any]]:
    """Run the design on both sides and compare the t-maps of every contrast.

    Parameters
    ----------
    ours, ref : list of SubjectOutputs
        The matched subjects, in one order (the GLM runs on the pairs that have the map on both sides).
    ours_all : list of SubjectOutputs
        Every vbmkit subject: the GLM's input when the reference is an SPM results folder.
    settings : GlmConfig
        Every setting of the GLM, used whole on both sides (``settings.maps`` is the map kind).
    glm_ours : Path, optional
        A finished ``vbmkit glm`` folder of the vbmkit maps fitted with ``settings``: reused.

    Returns
    -------
    (metrics, extras)
        ``metrics[name]`` = {r_median_t, max_abs_t_ours, max_abs_t_<kind>, dice_suprathreshold, ...}
        (None where a side is missing); ``extras["tmaps"][name]`` = (ours, reference, affine) arrays
        on the common grid for the report.
    """
    label = kind
    maps, contrasts = settings.maps, dict(settings.contrasts)
    ref_kind = _reference_kind(maps, ref, kind)
    pairs = [(a, b) for a, b in zip(ours, ref, strict=True)
             if maps in a.maps and ref_kind is not None and ref_kind in b.maps]
    empty = {"r_median_t": None, "max_abs_t_ours": None, f"max_abs_t_{label}": None, "dice_suprathreshold": None}
    results: dict[str, dict] = {name: dict(empty) for name in contrasts}
    tmaps: dict[str, tuple] = {}
    if glm_ours is not None:
        ours_out, s_ours = glm_ours, _finished_glm(glm_ours, settings)
        used = {Path(p).resolve() for p in s_ours["images"]}
        pairs = [(a, b) for a, b in pairs if Path(a.maps[maps]).resolve() in used]
        n_ours = len(used)
    else:
        ours_paths = [a.maps[maps] for a, _ in pairs] or [s.maps[maps] for s in ours_all if maps in s.maps]
        if not ours_paths:
            missing.append(f"contrasts: no {maps} maps on the vbmkit side")
            return results, {"tmaps": tmaps}
        ours_out = out / "glm_ours"
        try:
            s_ours = run_glm(ours_paths, covariates, id_column=id_column, settings=settings, out=ours_out,
                             missing="drop", device=device, progress=progress)
        except (DesignError, CovariateError) as exc:  # e.g. too few subjects: the other levels still count
            missing.append(f"contrasts: the design cannot be fitted to the {len(ours_paths)} vbmkit maps: {exc}")
            return results, {"tmaps": tmaps}
        n_ours = len(ours_paths)
    reference: dict[str, tuple[Path, Path, float]] = {}  # contrast -> (stat map, mask, threshold)
    same_draws = None
    if pairs:
        ref_settings = settings.model_copy(update={"maps": ref_kind})
        ref_out = out / f"glm_{label}"
        s_ref = run_glm([b.maps[ref_kind] for _, b in pairs], covariates, id_column=id_column,
                        settings=ref_settings, out=ref_out, missing="drop", device=device, progress=progress)
        same_draws = s_ours["subjects"] == s_ref["subjects"] and n_ours == len(pairs)
        for name in contrasts:
            c = s_ref["contrasts"][name]
            reference[name] = (_stat_file(ref_out, s_ref, name), ref_out / "mask.nii.gz",
                               c.get("subsample_threshold", c["threshold"]))
    elif kind == "spm":
        for c in find_results(ref_root).values():
            if c.name in contrasts and c.stat_map is not None and c.df:
                reference[c.name] = (c.stat_map, c.stat_map, p_to_t(0.001, c.df[-1]))
    if not reference:
        missing.append(f"contrasts: no reference t-maps ({maps} maps of the reference for the same subjects, or "
                       "spmT images named like the contrasts)")
    for name in contrasts:
        c = s_ours["contrasts"][name]
        a = _load(_stat_file(ours_out, s_ours, name))
        results[name]["max_abs_t_ours"] = float(a.data.abs().max())
        results[name]["same_draws"] = same_draws
        results[name]["n_subjects"] = s_ours["n_subjects"]
        if name not in reference:
            continue
        if c["type"] != "t":
            warnings.warn(f"contrast {name!r}: an F contrast; r and Dice are of F maps", stacklevel=2)
        stat_path, mask_path, thr_ref = reference[name]
        b = _load(stat_path)
        mask_b = _load(mask_path)
        mask_b = Maps((mask_b.data != 0).float(), mask_b.grid)
        thr_ours = c.get("subsample_threshold", c["threshold"])
        agr = _agreement(a, b, _load(ours_out / "mask.nii.gz"), mask_b, thr_ours, thr_ref)
        ta, tb, affine = agr.pop("_maps")
        agr[f"max_abs_t_{label}"] = agr.pop("max_abs_t_reference")
        results[name].update(agr)
        tmaps[name] = (ta.numpy(), tb.numpy(), affine)
    return results, {"tmaps": tmaps}


def _finished_glm(folder: Path, settings: GlmConfig) -> dict[str, Any]:
    """The summary of a finished ``vbmkit glm`` folder, checked to hold a fit with ``settings``."""
    summary = read_json(folder / "summary.json")
    if summary is None:
        raise VbmkitError(f"compare: expected a finished vbmkit glm folder {folder} (summary.json); none found")
    if summary.get("settings") != settings.model_dump(mode="json"):
        raise VbmkitError(f"compare: expected the GLM in {folder} to be fitted with the comparison's settings; "
                          "its summary.json holds other settings (rerun the glm stage)")
    return summary
