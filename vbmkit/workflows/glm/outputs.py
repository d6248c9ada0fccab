"""The files of ``vbmkit glm``: fit the full sample, subsamples and permutations, write every map and table.

Orchestration only: the numbers come from :mod:`vbmkit.stats` (``glm``, ``subsample``,
``permutation``, ``inference``, ``clusters``), maps are written through :mod:`vbmkit.io.nifti`
and figures by :mod:`vbmkit.report.glm_figures`. The output contract is in ``docs/glm.md``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.linalg
import torch

from vbmkit import __version__
from vbmkit.config import GlmConfig
from vbmkit.formula.design import Design
from vbmkit.io.atomic import write_text
from vbmkit.io.maps import load_maps, unmask
from vbmkit.io.nifti import save_volume
from vbmkit.report.glm_figures import plot_design, plot_glass_brain
from vbmkit.report.glm_report import write_glm_report
from vbmkit.stats.clusters import cluster_labels, find_clusters
from vbmkit.stats.design import ones_in_span, standardise_design
from vbmkit.stats.glm import fit
from vbmkit.stats.inference import fdr_q, p_to_f, p_to_t
from vbmkit.stats.map_permutation import TfceSettings, permutation_inference
from vbmkit.stats.peaks import tail_p
from vbmkit.stats.permutation import freedman_lane
from vbmkit.stats.subsample import fit_subsamples
from vbmkit.workflows.glm.cluster_table import (
    CLUSTER_COLUMNS,
    ClusterRow,
    atlas_lookups,
    cluster_table,
)
from vbmkit.workflows.progress import ProgressStages

__all__ = ["CLUSTER_COLUMNS", "compute_and_write", "output_files"]

#: Uncorrected p of the default statistic threshold (stability map, clusters, glass brain).
DEFAULT_P_THRESHOLD = 0.001
#: Cluster-forming p of the map-level engine when ``cluster_p`` is not given.
DEFAULT_CLUSTER_P = 0.001
def output_files(kind: str, *, subsamples: bool, permutations: bool, tfce: bool = False) -> dict[str, str]:
    """File names of one contrast folder (the output contract): role -> file name."""
    stat = "t" if kind == "t" else "F"
    files = {"stat": f"{stat}.nii.gz", "p": "p.nii.gz", "q_fdr": "q_fdr.nii.gz", "effect": "effect.nii.gz",
             "std_effect": "std_effect.nii.gz"}
    if permutations:
        files["p_fwe"] = "p_fwe.nii.gz"
    if permutations and tfce:
        files.update({"tfce": "tfce.nii.gz", "p_fwe_tfce": "p_fwe_tfce.nii.gz",
                      "log_p_fwe_tfce": "log_p_fwe_tfce.nii.gz"})
    if subsamples:
        files.update({"median": f"{stat}_median.nii.gz", "iqr": f"{stat}_iqr.nii.gz",
                      "stability": "stability.nii.gz"})
    files.update({"clusters": "clusters.csv", "glass_brain": "glass_brain.png"})
    return files


def tests_mean(contrast, X: np.ndarray, columns) -> bool:
    """Whether ``contrast`` tests the mean (one-sample, paired differences): it needs sign flips.

    The same rule as ``permutation_inference(scheme="auto")``: the constant lies in the design
    but not in the nuisance part the contrast leaves free.
    """
    xs, transform = standardise_design(np.asarray(X, dtype=np.float64), list(columns))
    z = xs @ scipy.linalg.null_space(np.atleast_2d(contrast.matrix) @ transform)
    return ones_in_span(xs) and not (z.shape[1] and ones_in_span(z))


def simple_effect_messages(design: Design, contrasts) -> list[str]:
    """Warnings for contrasts that test a term whose treatment-coded interaction makes it a simple effect.

    With ``age * C(group)`` (dummy coding: ``C(group)[T.b]``, ``age:C(group)[T.b]``), the column
    of ``age`` is the age slope in the reference group and ``C(group)[T.b]`` the group difference
    at ``age = 0`` (the mean age when standardised): a t or F of such a term tests a simple
    effect, not a main effect averaged over the other factor. Sum coding (``C(group, Sum)``)
    makes them main effects.
    """
    terms = {name: idx for name, idx in design.factor_columns.items() if name != "1"}
    treatment = {name for name, idx in terms.items()
                 if ":" in name and any("[T." in design.columns[i] for i in idx)}
    out = []
    for c in contrasts:
        used = set(np.flatnonzero(np.abs(np.atleast_2d(np.asarray(c.matrix, dtype=np.float64))).sum(0) > 0))
        for name, idx in terms.items():
            parts = set(name.split(":"))
            within = [i for i in treatment if parts < set(i.split(":"))]
            if within and used & set(idx):
                others = ", ".join(sorted(set(within[0].split(":")) - parts))
                out.append(f"contrast {c.name!r} tests {name}, which also enters the treatment-coded interaction "
                           f"{within[0]}: it is a simple effect ({name} at the reference level, or value 0, of {others}; "
                           f"0 is the mean of a standardised covariate), not a main effect averaged over {others}; "
                           "use sum coding (e.g. C(group, Sum)) for main effects, or test the interaction")
    return out


def uses_map_engine(settings: GlmConfig, contrasts, X: np.ndarray, columns) -> bool:
    """Whether the whole-map engine (TFCE, cluster FWE, tails, blocks, sign flips) runs.

    Without any of these the voxel-blocked ``freedman_lane`` gives the maxT p alone, much faster
    for large permutation counts (the map engine labels every permuted map).
    """
    if settings.permutations == 0:
        return False
    return bool(settings.tfce or settings.cluster_p is not None or settings.tail != "positive"
            or settings.blocks is not None or any(tests_mean(c, X, columns) for c in contrasts))


def threshold_for(kind: str, df: tuple[float, float], settings: GlmConfig) -> float:
    if settings.threshold is not None:
        return float(settings.threshold)
    if kind == "t":
        return float(p_to_t(DEFAULT_P_THRESHOLD, df[1]))
    return float(p_to_f(DEFAULT_P_THRESHOLD, df[0], df[1]))


def compute_and_write(paths: list[Path], design: Design, contrasts, settings: GlmConfig, weights, *, mask, dev,
                       tmp: Path, progress: bool, id_column: str, blocks: np.ndarray | None = None) -> dict:
    for message in simple_effect_messages(design, contrasts):
        warnings.warn(message, stacklevel=2)
    memory = int(settings.memory_gb * 1e9) if settings.memory_gb is not None else None
    timings: dict[str, float] = {}
    with ProgressStages(enabled=progress) as stages:
        t = time.perf_counter()
        # drop_constant: voxels without variance (e.g. zero in every subject) have no t
        maps = load_maps(paths, mask=mask, mask_threshold=settings.mask_threshold,
                         mask_rule=settings.mask_rule, drop_constant=True,
                         progress=stages.callback("reading maps", unit="files"))
        timings["read"] = time.perf_counter() - t
        Y, grid, stored, mask_final = maps.data, maps.grid, maps.stored_affine, maps.mask
        X = design.X

        t = time.perf_counter()
        full = fit(Y, X, contrasts, device=dev, memory_bytes=memory, columns=design.columns,
                   progress=stages.callback("full-sample fit", unit="voxels"))
        timings["fit"] = time.perf_counter() - t
        thresholds = {c.name: threshold_for(c.kind, full[c.name].df, settings) for c in contrasts}
        sub = None
        if weights is not None:
            m = int(torch.as_tensor(weights)[0].sum())
            sub_thresholds = {c.name: threshold_for(c.kind, (full[c.name].df[0], m - X.shape[1]), settings)
                              for c in contrasts}
            t = time.perf_counter()
            sub = fit_subsamples(Y, X, contrasts, weights, thresholds=sub_thresholds, device=dev,
                                 memory_bytes=memory, columns=design.columns,
                                 progress=stages.callback(f"{settings.subsamples} subsamples", unit="voxels"))
            timings["subsamples"] = time.perf_counter() - t
        perm = maps_fwe = None
        cluster_p = settings.cluster_p if settings.cluster_p is not None else DEFAULT_CLUSTER_P
        if uses_map_engine(settings, contrasts, X, design.columns):
            t = time.perf_counter()
            tfce = (TfceSettings(e=settings.tfce_e, h=settings.tfce_h, connectivity=settings.tfce_connectivity)
                    if settings.tfce else None)
            maps_fwe = permutation_inference(
                Y, X, contrasts, mask=mask_final, n_permutations=settings.permutations, seed=settings.seed,
                device=dev, tfce=tfce, cluster_p=cluster_p, tail=settings.tail, scheme="auto", blocks=blocks,
                memory_bytes=memory, columns=design.columns,
                progress=stages.callback(f"{settings.permutations} permutations (maps)", unit="permutations"))
            timings["permutations"] = time.perf_counter() - t
        elif settings.permutations > 0:
            t = time.perf_counter()
            perm = freedman_lane(Y, X, contrasts, n_permutations=settings.permutations, seed=settings.seed,
                                 device=dev, memory_bytes=memory, columns=design.columns,
                                 progress=stages.callback(f"{settings.permutations} permutations", unit="voxels"))
            timings["permutations"] = time.perf_counter() - t

    def save(rel: str, values, *, dtype=np.float32, fill: float = 0.0, description: str | None = None) -> None:
        save_volume(tmp / rel, unmask(values, mask_final, fill=fill), grid.affine, dtype=dtype,
                    orientation_of=stored, description=description)

    t = time.perf_counter()
    save_volume(tmp / "mask.nii.gz", mask_final.astype(np.uint8), grid.affine, dtype=np.uint8, orientation_of=stored)
    write_design(tmp, X, design, id_column)
    lookups = atlas_lookups()
    per_contrast: dict[str, dict] = {}
    for c in contrasts:
        res = full[c.name]
        files = output_files(c.kind, subsamples=sub is not None, permutations=perm is not None or maps_fwe is not None,
                             tfce=settings.tfce)
        folder = c.name
        df1, df2 = (float(v) for v in res.df)
        q = write_full_sample(save, c, res, files)
        n_fwe = n_tfce = None
        if perm is not None:
            save(f"{folder}/{files['p_fwe']}", perm[c.name].p_fwe, fill=1.0)
            n_fwe = int((np.asarray(_np(perm[c.name].p_fwe)) < 0.05).sum())
        mres = maps_fwe[c.name] if maps_fwe is not None else None
        if mres is not None:
            p_vox = _np(mres.p_fwe_voxel)[mask_final]
            save(f"{folder}/{files['p_fwe']}", p_vox, fill=1.0)
            n_fwe = int((p_vox < 0.05).sum())
            if mres.tfce is not None:
                p_tfce = _np(mres.p_fwe_tfce)[mask_final]
                tfce_values = _np(mres.tfce)[mask_final]
                save(f"{folder}/{files['tfce']}", tfce_values)
                save(f"{folder}/{files['p_fwe_tfce']}", p_tfce, fill=1.0)
                # TFCE toolbox's TFCE_log_pFWE: -log10 p, negative where the TFCE value is negative
                sign = np.where(tfce_values < 0, -1.0, 1.0)
                save(f"{folder}/{files['log_p_fwe_tfce']}", sign * -np.log10(p_tfce))
                n_tfce = int((p_tfce < 0.05).sum())
        if sub is not None:
            write_subsample_maps(save, c.name, sub[c.name], files)
        stat_map = unmask(res.stat, mask_final)
        table = _table(res, mres, perm, q, stat_map, c, (df1, df2), settings, mask_final, grid.affine,
                       thresholds[c.name], lookups)
        write_text(tmp / folder / files["clusters"], table.to_csv(index=False))
        # only the tested tail(s): a one-sided test never shows the other sign
        stat_name, dfs = stat_label(c.kind, res.df)
        tail = mres.tail if mres is not None and c.kind == "t" else "positive"
        thr = thresholds[c.name]
        shown = {"positive": np.maximum(stat_map, 0), "negative": np.minimum(stat_map, 0), "both": stat_map}[tail]
        rule = {"positive": f"{stat_name} > {thr:.2f}", "negative": f"{stat_name} < -{thr:.2f}",
                "both": f"|{stat_name}| > {thr:.2f}"}[tail]
        plot_glass_brain(shown, grid.affine, tmp / folder / files["glass_brain"], threshold=thr,
                         title=f"{c.name}: {rule} (df {dfs}, uncorrected)", two_sided=c.kind == "t")
        stat = _np(res.stat)
        per_contrast[c.name] = {
            "type": c.kind, "matrix": np.asarray(c.matrix).tolist(), "df": [df1, df2],
            "max_statistic": float(np.max(stat)), "min_statistic": float(np.min(stat)),
            "threshold": thresholds[c.name],
            "n_voxels_q_fdr_below_0.05": int((q < 0.05).sum()),
            "n_voxels_p_fwe_below_0.05": n_fwe,
            "n_clusters": int(table["cluster"].nunique()),  # clusters.csv has one row per peak
            "files": {k: f"{folder}/{v}" for k, v in files.items()},
        }
        if sub is not None:
            per_contrast[c.name]["subsample_threshold"] = sub_thresholds[c.name]
        if mres is not None:
            per_contrast[c.name].update({
                "cluster_threshold": float(mres.cluster_threshold),
                "n_voxels_p_fwe_tfce_below_0.05": n_tfce,
                "inference": {"engine": "map", "scheme": mres.scheme, "tail": mres.tail,
                              "n_permutations": int(mres.n_permutations), "cluster_p": cluster_p,
                              "cluster_connectivity": 26,
                              "tfce": ({"e": settings.tfce_e, "h": settings.tfce_h,
                                        "connectivity": settings.tfce_connectivity} if settings.tfce else None),
                              "blocks": settings.blocks}})
        elif perm is not None:
            per_contrast[c.name]["inference"] = {"engine": "voxel", "scheme": "permute", "tail": "positive",
                                                 "n_permutations": int(perm[c.name].max_null.shape[0])}
    summary = {
        "vbmkit_version": __version__,
        "n_subjects": int(X.shape[0]), "n_voxels": int(mask_final.sum()),
        "grid": {"shape": list(grid.shape), "affine": np.asarray(stored).tolist()},
        "formula": design.formula, "design_columns": design.columns,
        "standardized": {k: {"mean": m, "sd": s} for k, (m, s) in design.scaling.items()},
        "subjects": [str(i) for i in design.table[id_column]], "images": [str(p) for p in paths],
        "device": str(dev), "settings": settings.model_dump(mode="json"),
        "files": {"mask": "mask.nii.gz", "design_csv": "design.csv", "design_png": "design.png"},
        "contrasts": per_contrast,
    }
    return finish_summary(tmp, summary, timings, t)


def finish_summary(tmp: Path, summary: dict, timings: dict[str, float], t_write: float) -> dict:
    """Write ``report.html`` (a figure or template problem must not cost the statistics: the maps
    and tables are already written, so it becomes a warning) and add the stage timings."""
    try:
        write_glm_report(tmp, summary)
        summary["files"]["report"] = "report.html"
    except Exception as exc:
        warnings.warn(f"report.html: could not be written ({type(exc).__name__}: {exc}); every map and table "
                      "is there", stacklevel=3)
    timings["write"] = time.perf_counter() - t_write
    summary["stage_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return summary


def stat_label(kind: str, df) -> tuple[str, str]:
    """("T", "[df2]") or ("F", "[df1,df2]"): SPM's name of a statistic and its degrees of freedom."""
    df1, df2 = (float(v) for v in df)
    return ("T", f"[{df2:g}]") if kind == "t" else ("F", f"[{df1:g},{df2:g}]")


def write_design(tmp: Path, X: np.ndarray, design: Design, id_column: str) -> None:
    """``design.csv`` (subject IDs and the (N, P) design matrix) and ``design.png``."""
    design_df = pd.DataFrame(X, columns=design.columns)
    design_df.insert(0, id_column, list(design.table[id_column]))
    write_text(tmp / "design.csv", design_df.to_csv(index=False))
    plot_design(X, design.columns, tmp / "design.png", title=f"design: {design.formula} (N = {X.shape[0]})")


def write_full_sample(save, contrast, res, files: dict[str, str]):
    """The full-sample maps of one contrast (statistic with SPM's description, p, q, effects)
    through ``save(relative_path, masked_values, fill=, description=)``; returns the q map."""
    stat_name, dfs = stat_label(contrast.kind, res.df)
    folder = contrast.name
    save(f"{folder}/{files['stat']}", res.stat, description=f"SPM{{{stat_name}_{dfs}}} - {contrast.name}")
    save(f"{folder}/{files['p']}", res.p, fill=1.0)
    q = fdr_q(res.p)
    save(f"{folder}/{files['q_fdr']}", q, fill=1.0)
    save(f"{folder}/{files['effect']}", res.effect)
    save(f"{folder}/{files['std_effect']}", res.std_effect)
    return q


def write_subsample_maps(save, folder: str, maps, files: dict[str, str]) -> None:
    """Median and IQR of the statistic over the subsamples and its stability (share above threshold)."""
    save(f"{folder}/{files['median']}", maps.median)
    save(f"{folder}/{files['iqr']}", maps.iqr)
    save(f"{folder}/{files['stability']}", maps.stability)


def _table(res, mres, perm, q, stat_map, contrast, df, settings: GlmConfig, mask: np.ndarray, affine: np.ndarray,
           threshold: float, lookups) -> pd.DataFrame:
    """clusters.csv of one contrast: the map engine's clusters with their FWE p, else those of ``threshold``."""
    tail = mres.tail if mres is not None else "positive"
    if tail == "positive":
        p, q_tail = _np(res.p), q
    else:  # p and FDR q of the tested tail (res.p is the upper tail)
        p = tail_p(_np(res.stat), kind=contrast.kind, df=df, tail=tail)
        q_tail = fdr_q(p)
    maps = {"p": _grid64(p, mask), "q_fdr": _grid64(q_tail, mask), "p_fwe": None,
            "p_fwe_tfce": None}
    if mres is not None:
        maps["p_fwe"] = _np(mres.p_fwe_voxel)
        if mres.p_fwe_tfce is not None:
            maps["p_fwe_tfce"] = _np(mres.p_fwe_tfce)
        labels = _np(mres.cluster_labels) if mres.cluster_labels is not None else np.zeros(mask.shape, np.int32)
        rows = [ClusterRow(label=c.index, size_voxels=c.extent, p_fwe_cluster=c.p_fwe_extent,
                           p_fwe_mass=c.p_fwe_mass)
                for c in mres.clusters if c.extent >= settings.cluster_min_voxels]
    else:
        if perm is not None:
            maps["p_fwe"] = _grid64(_np(perm[contrast.name].p_fwe), mask)
        labels, _ = cluster_labels(stat_map, threshold, min_voxels=settings.cluster_min_voxels)
        rows = [ClusterRow(label=c.index, size_voxels=c.size_voxels)
                for c in find_clusters(stat_map, threshold, affine=affine, min_voxels=settings.cluster_min_voxels)]
    return cluster_table(stat_map, labels, rows, affine=affine, kind=contrast.kind, df=df, maps=maps,
                         lookups=lookups)


def _grid64(values, mask: np.ndarray) -> np.ndarray:
    """(V,) in-mask values on the (X, Y, Z) grid in float64 (p values below float32's range stay), 1 outside."""
    out = np.ones(mask.shape)
    out[mask] = np.asarray(values, dtype=np.float64)
    return out


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
