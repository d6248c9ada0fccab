"""``vbmkit glm``: maps + covariates -> design -> full-sample, subsample and permutation maps.

Orchestration only: every number comes from :mod:`vbmkit.stats`; files are read and written
through :mod:`vbmkit.io`; figures come from :mod:`vbmkit.report.glm_figures`.

Everything that can be checked is checked before the first voxel is read, and all outputs are
written into a temporary folder inside ``out`` whose files are moved into place at the end; ``out``
is claimed first (:mod:`vbmkit.io.ownership`): a folder holding files vbmkit did not write is
refused, and only files an earlier ``vbmkit glm`` listed in its stamp are replaced or removed.
A rerun with the same inputs and settings finds the stamp complete and returns ``summary.json``
without recomputing. The output contract is in ``docs/glm.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vbmkit import __version__
from vbmkit.config import GlmConfig
from vbmkit.device import resolve_device
from vbmkit.errors import ConfigError, CovariateError, DesignError
from vbmkit.io.atomic import write_json, write_text
from vbmkit.io.maps import check_grids, find_maps, load_maps, load_mask, match_ids, unmask
from vbmkit.io.nifti import save_volume
from vbmkit.io.ownership import check_claimable, claim
from vbmkit.io.tables import check_covariates, read_covariates
from vbmkit.workflows.design import (
    Design,
    build_design,
    check_formula_columns,
    parse_contrasts,
    tiv_correlations,
)
from vbmkit.workflows.glm_progress import ProgressStages

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


def _fingerprint(paths: Sequence[Path], table: pd.DataFrame, settings: GlmConfig, id_column: str,
                 missing: str) -> str:
    """Hash of everything the results depend on (file sizes and times stand in for contents)."""
    h = hashlib.sha256()
    h.update(json.dumps(settings.model_dump(mode="json"), sort_keys=True).encode())
    h.update(f"{id_column}|{missing}|{__version__}".encode())
    h.update(pd.util.hash_pandas_object(table.astype(str), index=False).values.tobytes())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    if settings.mask is not None and Path(settings.mask).is_file():
        st = Path(settings.mask).stat()
        h.update(f"{Path(settings.mask).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _resolve_subjects(images: Sequence[str | os.PathLike], table: pd.DataFrame, *, id_column: str,
                      kind: str, missing: str) -> tuple[list[Path], pd.DataFrame, dict[str, list[str]]]:
    """Match images to rows; apply the ``missing`` policy to unmatched ones."""
    paths = find_maps(images, kind=kind)
    matched = match_ids(paths, list(table[id_column]), kind=kind)
    dropped = {"images_without_row": [str(p) for p in matched.images_without_row],
               "rows_without_image": list(matched.rows_without_image)}
    where = table.attrs.get("source", "covariate table")
    problems = []
    if matched.images_without_row:
        problems.append(f"{len(matched.images_without_row)} images have no row in {where} "
                        f"(column {id_column!r}): {dropped['images_without_row'][:20]}")
    if matched.rows_without_image:
        problems.append(f"{len(matched.rows_without_image)} rows of {where} have no image: "
                        f"{dropped['rows_without_image'][:20]}")
    if problems and missing != "drop":
        raise CovariateError("; ".join(problems) + " (expected one image per row; use --missing drop "
                             "to analyse only the subjects that have both)")
    for msg in problems:
        warnings.warn(f"{msg}; dropped (--missing drop)", stacklevel=3)
    if not matched.ids:
        raise CovariateError(f"images and {where}: expected subjects with both an image and a row; "
                             f"no file name contains an ID of column {id_column!r}")
    used = table.set_index(id_column, drop=False).loc[matched.ids].reset_index(drop=True)
    used.attrs["source"] = where
    return matched.paths, used, dropped


def _draw(design: Design, settings: GlmConfig) -> torch.Tensor | None:
    """The (K, N) subsample draws, checked before any image is read (None without subsamples)."""
    from vbmkit.stats.subsample import draw_subsamples

    if settings.stratify is not None and settings.stratify not in design.table.columns:
        raise CovariateError(f"stratify: expected a column {settings.stratify!r} in the covariate table; "
                             f"its columns are {list(map(str, design.table.columns))}")
    if settings.subsamples == 0:
        return None
    n, p = design.X.shape
    m = int(round(settings.fraction * n))
    if settings.stratify is None and m < p + 2:
        raise DesignError(f"fraction {settings.fraction}: each subsample would hold {m} of {n} subjects, "
                          f"fewer than the {p} design columns + 2; raise --fraction or use --subsamples 0")
    strata = None
    if settings.stratify is not None:
        strata = pd.factorize(design.table[settings.stratify].astype(str))[0]
    return draw_subsamples(n, k=settings.subsamples, fraction=settings.fraction, strata=strata,
                           seed=settings.seed, min_subjects=p + 2)


def _lpba40_lookup():
    """A function mm -> LPBA40 abbreviation, or None when the atlas is unavailable."""
    try:
        from vbmkit.io.atlas import load_atlas, region_at_mm

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


def run_glm(images: Sequence[str | os.PathLike], covariates: str | os.PathLike | pd.DataFrame, *,
            id_column: str, settings: GlmConfig, out: str | os.PathLike, missing: str = "error",
            device: str = "auto", progress: bool = True) -> dict:
    """Fit the voxel-wise GLM of ``settings`` to the maps and write the output contract to ``out``.

    Parameters
    ----------
    images : sequence of str or path
        Files, globs or output folders (see :func:`vbmkit.io.maps.find_maps`).
    covariates : path or pandas.DataFrame
        Covariate table (CSV/TSV) or a DataFrame holding ``id_column``.
    id_column : str
        Column of subject IDs; each image's ID is the one occurring in its file name.
    settings : GlmConfig
        Formula, contrasts, subsamples, permutations, mask, threshold, ...
    out : path
        Output folder (created; an earlier glm output there is replaced).
    missing : {"error", "drop"}
        Images without a row, rows without an image and rows with missing formula values.
    device : str
        ``auto``, ``cpu`` or ``cuda``; ``auto`` defers to ``settings.device``.
    progress : bool
        Show progress bars on stderr.

    Returns
    -------
    dict
        The content of ``out/summary.json``.

    Raises
    ------
    ImageError, GridMismatchError, CovariateError, DesignError, ConfigError
        For bad input, before anything is written.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if missing not in ("error", "drop"):
        raise ConfigError(f"missing: expected 'error' or 'drop'; got {missing!r}")
    check_claimable(out, command="glm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(covariates, pd.DataFrame):
            table = check_covariates(covariates, id_column=id_column)
        else:
            table = read_covariates(covariates, id_column=id_column)
        check_formula_columns(table, settings.formula)
        paths, used, dropped = _resolve_subjects(images, table, id_column=id_column, kind=settings.maps,
                                                 missing=missing)
        design = build_design(used, settings.formula, standardize=settings.standardize, id_column=id_column,
                              missing=missing)
        if len(design.table) < len(used):  # rows with missing values were dropped
            keep = set(design.table[id_column])
            dropped["rows_with_missing_values"] = [i for i in used[id_column] if i not in keep]
            paths = [p for p, i in zip(paths, used[id_column], strict=True) if i in keep]
        contrasts = parse_contrasts(settings.contrasts, design)
        tiv_correlations(design, contrasts)
        from vbmkit.workflows.glm_resources import (
            check_glm_resources,  # counts and memory, before any allocation
        )
        check_glm_resources(design, contrasts, settings, paths, device=device)
        weights = _draw(design, settings)
        dev = resolve_device(device if device != "auto" else settings.device)
        grid = check_grids(paths)
        mask = load_mask(Path(settings.mask), grid, reference=paths[0]) if settings.mask is not None else None
    messages = [str(w.message) for w in caught]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    fingerprint = _fingerprint(paths, design.table, settings, id_column, missing)
    with claim(out, command="glm") as owned:
        previous = out / "summary.json"
        if owned.is_complete(fingerprint) and owned.owns("summary.json") and previous.is_file():
            try:
                summary = json.loads(previous.read_text(encoding="utf-8"))
                summary["up_to_date"] = True
                return summary
            except (OSError, ValueError):
                pass
        owned.start()
        tmp = owned.tmp_dir("glm")
        try:
            with warnings.catch_warnings(record=True) as late:
                warnings.simplefilter("always")
                summary = _compute_and_write(paths, design, contrasts, settings, weights, mask=mask, dev=dev,
                                             tmp=tmp, progress=progress, id_column=id_column)
            for w in late:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            messages += [str(w.message) for w in late]
            summary.update({"dropped": dropped, "warnings": messages, "fingerprint": fingerprint,
                            "seconds": round(time.perf_counter() - t0, 3)})
            write_json(tmp / "summary.json", summary)
            owned.adopt(tmp)
            owned.finish(fingerprint)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _threshold(kind: str, df: tuple[float, float], settings: GlmConfig) -> float:
    from vbmkit.stats.inference import p_to_f, p_to_t

    if settings.threshold is not None:
        return float(settings.threshold)
    if kind == "t":
        return float(p_to_t(DEFAULT_P_THRESHOLD, df[1]))
    return float(p_to_f(DEFAULT_P_THRESHOLD, df[0], df[1]))


def _compute_and_write(paths: list[Path], design: Design, contrasts, settings: GlmConfig, weights, *, mask, dev,
                       tmp: Path, progress: bool, id_column: str) -> dict:
    from vbmkit.report.glm_figures import plot_design, plot_glass_brain
    from vbmkit.stats.clusters import find_clusters
    from vbmkit.stats.glm import fit
    from vbmkit.stats.inference import fdr_q

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
        thresholds = {c.name: _threshold(c.kind, full[c.name].df, settings) for c in contrasts}
        sub = None
        if weights is not None:
            from vbmkit.stats.subsample import fit_subsamples

            m = int(torch.as_tensor(weights)[0].sum())
            sub_thresholds = {c.name: _threshold(c.kind, (full[c.name].df[0], m - X.shape[1]), settings)
                              for c in contrasts}
            t = time.perf_counter()
            sub = fit_subsamples(Y, X, contrasts, weights, thresholds=sub_thresholds, device=dev,
                                 memory_bytes=memory, columns=design.columns,
                                 progress=stages.callback(f"{settings.subsamples} subsamples"))
            timings["subsamples"] = time.perf_counter() - t
        perm = None
        if settings.permutations > 0:
            from vbmkit.stats.permutation import freedman_lane

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
