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
from vbmkit.stats.glm import fit
from vbmkit.stats.inference import fdr_q, p_to_f, p_to_t
from vbmkit.stats.permutation import freedman_lane
from vbmkit.stats.subsample import fit_subsamples
from vbmkit.workflows.progress import ProgressStages

#: Uncorrected p of the default statistic threshold (stability map, clusters, glass brain).
DEFAULT_P_THRESHOLD = 0.001
CLUSTER_COLUMNS = ["cluster", "size_voxels", "size_ml", "peak_value", "peak_x_mm", "peak_y_mm", "peak_z_mm",
                   "lpba40_region"]


def output_files(kind: str, *, subsamples: bool, permutations: bool) -> dict[str, str]:
    """File names of one contrast folder (the output contract): role -> file name."""
    stat = "t" if kind == "t" else "F"
    files = {"stat": f"{stat}.nii.gz", "p": "p.nii.gz", "q_fdr": "q_fdr.nii.gz", "effect": "effect.nii.gz",
             "std_effect": "std_effect.nii.gz"}
    if permutations:
        files["p_fwe"] = "p_fwe.nii.gz"
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


def threshold_for(kind: str, df: tuple[float, float], settings: GlmConfig) -> float:
    if settings.threshold is not None:
        return float(settings.threshold)
    if kind == "t":
        return float(p_to_t(DEFAULT_P_THRESHOLD, df[1]))
    return float(p_to_f(DEFAULT_P_THRESHOLD, df[0], df[1]))


def compute_and_write(paths: list[Path], design: Design, contrasts, settings: GlmConfig, weights, *, mask, dev,
                       tmp: Path, progress: bool, id_column: str) -> dict:
    memory = int(settings.memory_gb * 1e9) if settings.memory_gb is not None else None
    timings: dict[str, float] = {}
    with ProgressStages(enabled=progress) as stages:
        t = time.perf_counter()
        # drop_constant: voxels without variance (e.g. zero in every subject) have no t
        maps = load_maps(paths, mask=mask, mask_threshold=settings.mask_threshold, drop_constant=True,
                         progress=stages.callback("reading maps"))
        timings["read"] = time.perf_counter() - t
        Y, grid, stored, mask_final = maps.data, maps.grid, maps.stored_affine, maps.mask
        X = design.X

        t = time.perf_counter()
        full = fit(Y, X, contrasts, device=dev, memory_bytes=memory, columns=design.columns,
                   progress=stages.callback("full-sample fit"))
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
                                 progress=stages.callback(f"{settings.subsamples} subsamples"))
            timings["subsamples"] = time.perf_counter() - t
        perm = None
        if settings.permutations > 0:
            t = time.perf_counter()
            perm = freedman_lane(Y, X, contrasts, n_permutations=settings.permutations, seed=settings.seed,
                                 device=dev, memory_bytes=memory, columns=design.columns,
                                 progress=stages.callback(f"{settings.permutations} permutations"))
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
        files = output_files(c.kind, subsamples=sub is not None, permutations=perm is not None)
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
        n_fwe = None
        if perm is not None:
            save(f"{folder}/{files['p_fwe']}", perm[c.name].p_fwe, fill=1.0)
            n_fwe = int((np.asarray(_np(perm[c.name].p_fwe)) < 0.05).sum())
        if sub is not None:
            s = sub[c.name]
            save(f"{folder}/{files['median']}", s.median)
            save(f"{folder}/{files['iqr']}", s.iqr)
            save(f"{folder}/{files['stability']}", s.stability)
        stat_map = unmask(res.stat, mask_final)
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
