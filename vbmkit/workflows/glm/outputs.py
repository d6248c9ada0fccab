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
from vbmkit.io.atlas import load_atlas, region_at_mm
from vbmkit.io.atomic import write_text
from vbmkit.io.maps import load_maps, unmask
from vbmkit.io.nifti import save_volume
from vbmkit.report.glm_figures import plot_design, plot_glass_brain
from vbmkit.stats.clusters import find_clusters
from vbmkit.stats.design import ones_in_span, standardise_design
from vbmkit.stats.glm import fit
from vbmkit.stats.inference import fdr_q, p_to_f, p_to_t
from vbmkit.stats.map_permutation import TfceSettings, permutation_inference
from vbmkit.stats.permutation import freedman_lane
from vbmkit.stats.subsample import fit_subsamples
from vbmkit.workflows.progress import ProgressStages

#: Uncorrected p of the default statistic threshold (stability map, clusters, glass brain).
DEFAULT_P_THRESHOLD = 0.001
#: Cluster-forming p of the map-level engine when ``cluster_p`` is not given.
DEFAULT_CLUSTER_P = 0.001
#: Columns of clusters.csv; the last two (cluster extent and mass FWE p) only with map-level inference.
CLUSTER_COLUMNS = ["cluster", "size_voxels", "size_ml", "peak_value", "peak_x_mm", "peak_y_mm", "peak_z_mm",
                   "lpba40_region", "p_fwe_cluster", "p_fwe_mass"]
_BASE_COLUMNS = CLUSTER_COLUMNS[:8]


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


def _lpba40_lookup():
    """A function mm -> LPBA40 abbreviation, or None when the atlas is unavailable."""
    try:
        atlas = load_atlas("lpba40")
    except Exception as exc:  # the atlas module is optional for the GLM
        warnings.warn(f"LPBA40 atlas unavailable ({exc}); clusters.csv leaves lpba40_region empty",
                      stacklevel=2)
        return None
    return lambda xyz: region_at_mm(atlas, xyz)


def _cluster_table(clusters, lookup) -> pd.DataFrame:
    rows = []
    for c in clusters:
        xyz = [float(v) for v in c.peak_mm]
        # rounded for a readable table: mL to 1 mm^3, statistics to 1e-4, mm to 1e-3
        rows.append({"cluster": int(c.index), "size_voxels": int(c.size_voxels),
                     "size_ml": round(float(c.size_ml), 6), "peak_value": round(float(c.peak_value), 4),
                     "peak_x_mm": round(xyz[0], 3), "peak_y_mm": round(xyz[1], 3), "peak_z_mm": round(xyz[2], 3),
                     "lpba40_region": lookup(xyz) if lookup is not None else ""})
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)


def _map_cluster_table(result, stat_map: np.ndarray, affine: np.ndarray, lookup, min_voxels: int) -> pd.DataFrame:
    """clusters.csv from the map-level engine: its clusters (extent >= min_voxels) with their FWE p."""
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    rows = []
    for c in (c for c in result.clusters if c.extent >= min_voxels):
        xyz = [float(v) for v in (affine @ np.array([*c.peak_ijk, 1.0]))[:3]]
        rows.append({"cluster": len(rows) + 1, "size_voxels": int(c.extent), "size_ml": round(c.extent * voxel_ml, 6),
                     "peak_value": round(float(stat_map[c.peak_ijk]), 4), "peak_x_mm": round(xyz[0], 3),
                     "peak_y_mm": round(xyz[1], 3), "peak_z_mm": round(xyz[2], 3),
                     "lpba40_region": lookup(xyz) if lookup is not None else "",
                     "p_fwe_cluster": float(c.p_fwe_extent), "p_fwe_mass": float(c.p_fwe_mass)})
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)


def tests_mean(contrast, X: np.ndarray, columns) -> bool:
    """Whether ``contrast`` tests the mean (one-sample, paired differences): it needs sign flips.

    The same rule as ``permutation_inference(scheme="auto")``: the constant lies in the design
    but not in the nuisance part the contrast leaves free.
    """
    xs, transform = standardise_design(np.asarray(X, dtype=np.float64), list(columns))
    z = xs @ scipy.linalg.null_space(np.atleast_2d(contrast.matrix) @ transform)
    return ones_in_span(xs) and not (z.shape[1] and ones_in_span(z))


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
    memory = int(settings.memory_gb * 1e9) if settings.memory_gb is not None else None
    timings: dict[str, float] = {}
    with ProgressStages(enabled=progress) as stages:
        t = time.perf_counter()
        # drop_constant: voxels without variance (e.g. zero in every subject) have no t
        maps = load_maps(paths, mask=mask, mask_threshold=settings.mask_threshold, drop_constant=True,
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
    design_df = pd.DataFrame(X, columns=design.columns)
    design_df.insert(0, id_column, list(design.table[id_column]))
    write_text(tmp / "design.csv", design_df.to_csv(index=False))
    plot_design(X, design.columns, tmp / "design.png", title=f"design: {design.formula} (N = {X.shape[0]})")
    lookup = _lpba40_lookup()
    per_contrast: dict[str, dict] = {}
    for c in contrasts:
        res = full[c.name]
        files = output_files(c.kind, subsamples=sub is not None, permutations=perm is not None or maps_fwe is not None,
                             tfce=settings.tfce)
        folder = c.name
        stat_name = "T" if c.kind == "t" else "F"
        df1, df2 = (float(v) for v in res.df)
        dfs = f"[{df2:g}]" if c.kind == "t" else f"[{df1:g},{df2:g}]"
        save(f"{folder}/{files['stat']}", res.stat, description=f"SPM{{{stat_name}_{dfs}}} - {c.name}")
        save(f"{folder}/{files['p']}", res.p, fill=1.0)
        q = fdr_q(res.p)
        save(f"{folder}/{files['q_fdr']}", q, fill=1.0)
        save(f"{folder}/{files['effect']}", res.effect)
        save(f"{folder}/{files['std_effect']}", res.std_effect)
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
            s = sub[c.name]
            save(f"{folder}/{files['median']}", s.median)
            save(f"{folder}/{files['iqr']}", s.iqr)
            save(f"{folder}/{files['stability']}", s.stability)
        stat_map = unmask(res.stat, mask_final)
        if mres is not None:
            table = _map_cluster_table(mres, stat_map, grid.affine, lookup, settings.cluster_min_voxels)
        else:
            clusters = find_clusters(stat_map, thresholds[c.name], affine=grid.affine,
                                     min_voxels=settings.cluster_min_voxels)
            table = _cluster_table(clusters, lookup)
        write_text(tmp / folder / files["clusters"], table.to_csv(index=False))
        plot_glass_brain(stat_map, grid.affine, tmp / folder / files["glass_brain"], threshold=thresholds[c.name],
                         title=f"{c.name}: {stat_name} > {thresholds[c.name]:.2f} (df {dfs})",
                         two_sided=c.kind == "t")
        stat = _np(res.stat)
        per_contrast[c.name] = {
            "type": c.kind, "matrix": np.asarray(c.matrix).tolist(), "df": [df1, df2],
            "max_statistic": float(np.max(stat)), "min_statistic": float(np.min(stat)),
            "threshold": thresholds[c.name],
            "n_voxels_q_fdr_below_0.05": int((q < 0.05).sum()),
            "n_voxels_p_fwe_below_0.05": n_fwe,
            "n_clusters": len(table),
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
    timings["write"] = time.perf_counter() - t
    return {
        "vbmkit_version": __version__,
        "n_subjects": int(X.shape[0]), "n_voxels": int(mask_final.sum()),
        "grid": {"shape": list(grid.shape), "affine": np.asarray(stored).tolist()},
        "formula": design.formula, "design_columns": design.columns,
        "standardized": {k: {"mean": m, "sd": s} for k, (m, s) in design.scaling.items()},
        "subjects": [str(i) for i in design.table[id_column]], "images": [str(p) for p in paths],
        "device": str(dev), "settings": settings.model_dump(mode="json"),
        "files": {"mask": "mask.nii.gz", "design_csv": "design.csv", "design_png": "design.png"},
        "contrasts": per_contrast, "stage_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
