"""``vbmkit roi``: modulated tissue maps + atlas -> regional volume tables (+ ROI statistics).

Orchestration only: volumes come from :mod:`vbmkit.stats.roi`, statistics from
:func:`vbmkit.stats.glm.fit` with the design and contrasts of :mod:`vbmkit.workflows.design`
(the same as the voxel GLM); tables are written through :mod:`vbmkit.io.catroi`.
The output contract is in ``docs/roi.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vbmkit import __version__
from vbmkit.device import resolve_device
from vbmkit.errors import ConfigError, CovariateError, ImageError
from vbmkit.io.atlas import Atlas, load_atlas, same_space
from vbmkit.io.atomic import atomic_path, write_json
from vbmkit.io.catroi import LONG_COLUMNS, subject_tiv_ml, write_cat12_group_csv
from vbmkit.io.maps import check_map_values, match_ids, warn_outlying_means
from vbmkit.io.nifti import load_map
from vbmkit.io.ownership import OwnedFolder, check_claimable, claim
from vbmkit.io.tables import check_covariates, read_covariates
from vbmkit.space import resample
from vbmkit.stats.qc import map_sanity
from vbmkit.stats.roi import region_index, region_volumes
from vbmkit.workflows.glm_progress import ProgressStages
from vbmkit.workflows.roi_inputs import (
    TISSUE_KINDS,
    SubjectMaps,
    common_tissues,
    find_subject_maps,
    split_kind,
)

#: Negative voxels down to this value are interpolation overshoot (clipped with a warning);
#: below it the map is not a tissue map and the run stops.
NEGATIVE_TOLERANCE = 1e-2
STATS_COLUMNS = ["region", "region_id", "hemisphere", "tissue", "contrast", "kind", "stat", "df1", "df2",
                 "p", "q_fdr", "effect", "std_effect"]


def read_map_on_atlas(path: Path, atlas: Atlas, warned: set, means: dict | None = None) -> torch.Tensor:
    """Read one map onto the atlas grid: resample when needed, check its values (:func:`check_values`).

    NaN voxels mean 'no data' (SPM12's outside-the-field-of-view; one warning per file) and
    count as 0 in every sum; trilinear resampling spreads NaN to the target voxels whose
    interpolation touches one, so a voxel at the border of the data is left out rather than
    diluted. ``means`` (path -> in-atlas mean) collects what the outlier check needs.
    """
    vol = load_map(path)  # Inf, or no finite voxel at all -> ImageError naming the file
    data = vol.data
    if not same_space(vol.grid, atlas, source=str(path)):
        key = (vol.grid.shape, vol.grid.affine.round(3).tobytes())
        if key not in warned:
            warned.add(key)
            warnings.warn(f"{path}: grid {vol.grid.shape} ({np.round(vol.grid.voxel_size, 2).tolist()} mm) "
                          f"is not the atlas grid {atlas.grid.shape}; resampling the maps (trilinear) onto "
                          "it (same space, other resolution)", stacklevel=3)
        # mwp values are densities (tissue fraction x Jacobian): they resample as values and
        # volumes follow from the atlas grid's voxel volume.
        data = resample(data, vol.grid, atlas.grid, mode="bilinear")
    return check_values(data, path, inside=atlas.labels > 0, means=means)


def check_values(data: torch.Tensor, path: Path, *, inside: torch.Tensor | None = None,
                 means: dict | None = None) -> torch.Tensor:
    """Check one tissue map and return it with NaN ('no data') set to 0.

    Parameters
    ----------
    data : torch.Tensor
        (X, Y, Z) map; NaN where it has no data.
    inside : torch.Tensor, optional
        (X, Y, Z) bool brain (the atlas's labelled voxels); default the whole grid.
    means : dict, optional
        Receives ``means[path]`` = the map's mean over the finite voxels ``inside``.

    Raises
    ------
    ImageError
        Naming the file: clearly negative voxels (below ``-NEGATIVE_TOLERANCE``; slight
        interpolation overshoot is clipped with a warning), no finite voxel inside the brain,
        or an all-zero, constant or near-empty map there (:func:`vbmkit.io.maps.check_map_values`).
    """
    finite = torch.isfinite(data)
    region = finite if inside is None else finite & inside.to(finite.device)
    where = "the grid" if inside is None else "the atlas"
    if not bool(region.any()):
        raise ImageError(f"{path}: expected data (not NaN) inside {where}; all its voxels there are NaN "
                         "(no data: the field of view misses the brain)")
    data = torch.where(finite, data, torch.zeros_like(data))
    low = float(data.min())
    if low < 0:
        if low < -NEGATIVE_TOLERANCE:
            raise ImageError(f"{path}: expected tissue values >= 0; found a minimum of {low:.4g} "
                             f"({int((data < 0).sum())} negative voxels)")
        warnings.warn(f"{path}: {int((data < 0).sum())} slightly negative voxels (min {low:.2g}, "
                      "interpolation overshoot) clipped to 0", stacklevel=3)
        data = data.clamp(min=0)
    values = data[region] if inside is not None else data[finite]
    sanity = map_sanity(values[None])
    check_map_values(sanity, [path], where=where)
    if means is not None:
        means[path] = float(sanity.mean[0])
    return data


def _fingerprint(subjects: Sequence[SubjectMaps], settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(__version__.encode())
    for s in subjects:
        for p in s.maps.values():
            st = p.stat()
            h.update(f"{s.name}|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _table_hash(table: pd.DataFrame) -> str:
    """Content hash of the covariate rows used (a changed covariate file means recomputing)."""
    return hashlib.sha256(pd.util.hash_pandas_object(table.astype(str), index=False).values.tobytes()).hexdigest()


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")


def _resolve_covariates(subjects: list[SubjectMaps], covariates, id_column: str, missing: str,
                        formula: str | None):
    from vbmkit.workflows.design import check_formula_columns

    if isinstance(covariates, pd.DataFrame):
        table = check_covariates(covariates, id_column=id_column)
    else:
        table = read_covariates(covariates, id_column=id_column)
    if formula is not None:
        check_formula_columns(table, formula)
    gm_paths = [s.maps["gm"] for s in subjects]
    matched = match_ids(gm_paths, list(table[id_column]), kind="mwp1")
    problems = []
    if matched.images_without_row:
        problems.append(f"{len(matched.images_without_row)} subjects have no row in the covariates "
                        f"(column {id_column!r}): {[str(p) for p in matched.images_without_row][:10]}")
    if matched.rows_without_image:
        problems.append(f"{len(matched.rows_without_image)} covariate rows have no maps: "
                        f"{matched.rows_without_image[:10]}")
    if problems and missing != "drop":
        raise CovariateError("; ".join(problems) + " (expected one subject per row; use --missing drop)")
    for msg in problems:
        warnings.warn(f"{msg}; dropped", stacklevel=3)
    if not matched.ids:
        raise CovariateError(f"covariates: no map file name contains an ID of column {id_column!r}")
    by_gm = {s.maps["gm"]: s for s in subjects}
    chosen = [SubjectMaps(i, by_gm[p].maps) for i, p in zip(matched.ids, matched.paths, strict=True)]
    used = table.set_index(id_column, drop=False).loc[matched.ids].reset_index(drop=True)
    used.attrs["source"] = table.attrs.get("source", "covariate table")
    return chosen, used


def template_volumes(subjects: Sequence[SubjectMaps], tissues: Sequence[str], atl: Atlas, *,
                     device: torch.device, batch_size: int = 16, progress: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(N, T, R) regional and (N, T) total mL of the modulated maps, batch by batch, + timings."""
    index = region_index(atl.labels, atl.region_ids, device=device)
    n, r, t = len(subjects), index.n_regions, len(tissues)
    regional = np.zeros((n, t, r))
    total = np.zeros((n, t))
    warned: set = set()
    means: dict = {}
    t_read = t_compute = 0.0
    with ProgressStages(enabled=progress) as stages, ThreadPoolExecutor(max_workers=2) as pool:
        tick = stages.callback("ROI volumes")
        for start in range(0, n, batch_size):
            batch = subjects[start:start + batch_size]
            tr = time.perf_counter()
            files = [s.maps[ti] for s in batch for ti in tissues]
            maps = list(pool.map(lambda p: read_map_on_atlas(p, atl, warned, means), files))
            block = torch.stack(maps).reshape(len(batch), t, *atl.grid.shape).to(device)
            tc = time.perf_counter()
            vols = region_volumes(block, index, voxel_volume_ml=atl.grid.voxel_volume_ml)
            regional[start:start + len(batch)] = vols.regional.cpu().numpy()
            total[start:start + len(batch)] = vols.total.cpu().numpy()
            t_read += tc - tr
            t_compute += time.perf_counter() - tc
            if tick is not None:
                tick(start + len(batch), n)
    for tissue in tissues:  # an outlying in-atlas mean: a warning naming the file and its robust z
        paths = [s.maps[tissue] for s in subjects]
        warn_outlying_means(torch.tensor([means[p] for p in paths]), paths, where="the atlas")
    return regional, total, {"read": round(t_read, 3), "volumes": round(t_compute, 3)}


def run_roi(images: Sequence[str | os.PathLike], *, out: str | os.PathLike, atlas: str = "lpba40",
            covariates: str | os.PathLike | pd.DataFrame | None = None, id_column: str = "participant_id",
            formula: str | None = None, contrasts: Mapping[str, object] | None = None,
            standardize: bool = True, missing: str = "error", native: bool = False,
            tissues: Sequence[str] | None = None, name: str | None = None,
            device: str = "auto", batch_size: int = 16, progress: bool = True) -> dict:
    """Measure every subject's GM/WM(/CSF) volume in every atlas region and write the tables.

    Parameters
    ----------
    images : sequence of str or path
        mwp1/mwp2(/mwp3) files, globs, or vbmkit / CAT12 / deepmriprep output folders.
    out : path
        Output folder: ``roi_long.csv``, ``roi_wide.csv``, ``<name>_catROI_<atlas>_V{gm,wm,csf}.csv``,
        ``roi_summary.json`` and, with covariates, ``roi_stats.csv``.
    atlas : str
        ``lpba40`` or another atlas name / NIfTI path (:func:`vbmkit.io.atlas.load_atlas`).
    covariates, id_column, formula, contrasts, standardize, missing
        As for ``vbmkit glm``: the ROI statistics fit the same design and contrasts to every
        region's volume (FDR across regions per contrast and tissue).
    native : bool
        Measure in each subject's native space as CAT12 does (atlas carried into the subject
        through the inverse of the ``y_`` deformation, native ``p1``/``p2``/``p3`` summed per
        label) instead of summing the template-space modulated maps; needs ``p1<name>`` and
        ``y_<name>`` beside each ``mwp1<name>`` (see :mod:`vbmkit.workflows.roi_native`).
    tissues : sequence of {"gm", "wm", "csf"}, optional
        Measure only these (of those every subject has maps for); default all available.
    name : str, optional
        Prefix of the CAT12 group exports (default: the name of ``out``).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    batch_size : int
        Subjects per scatter-add batch (maps of a batch are held in memory: ~7 MB per map).

    Returns
    -------
    dict
        The content of ``roi_summary.json``.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if (formula is None) != (not contrasts) or (formula is not None and covariates is None):
        raise ConfigError("ROI statistics: expected --covariates, --formula and at least one --contrast "
                          "together (or none of them)")
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer; got {batch_size}")
    check_claimable(out, command="roi")
    dev = resolve_device(device)
    subjects = find_subject_maps(images)
    available = common_tissues(subjects)
    if tissues is not None:
        unknown = sorted(set(tissues) - set(TISSUE_KINDS))
        if unknown:
            raise ConfigError(f"tissues: expected some of {list(TISSUE_KINDS)}; got {unknown}")
        available = [t for t in available if t in tissues]
        if "gm" not in available:
            raise ConfigError(f"tissues: expected 'gm' among them (the first column of every table); got {list(tissues)}")
    tissues = available
    design = contrast_list = None
    if covariates is not None:
        from vbmkit.workflows.design import build_design, parse_contrasts

        subjects, used = _resolve_covariates(subjects, covariates, id_column, missing, formula)
        if formula is not None:
            design = build_design(used, formula, standardize=standardize, id_column=id_column, missing=missing)
            if len(design.table) < len(used):
                keep = set(design.table[id_column])
                subjects = [s for s in subjects if s.name in keep]
            contrast_list = parse_contrasts(dict(contrasts), design)
    atl = load_atlas(atlas)
    settings = {"atlas": atlas, "native": native, "tissues": tissues, "formula": formula,
                "contrasts": dict(contrasts or {}), "standardize": standardize, "id_column": id_column, "missing": missing,
                "covariates": _table_hash(used) if covariates is not None else None}
    fingerprint = _fingerprint(subjects, settings)
    summary_path = out / "roi_summary.json"
    with claim(out, command="roi") as owned:
        if owned.is_complete(fingerprint) and owned.owns("roi_summary.json") and summary_path.is_file():
            try:
                previous = json.loads(summary_path.read_text(encoding="utf-8"))
                previous["up_to_date"] = True
                return previous
            except (OSError, ValueError):
                pass
        owned.start()
        summary = _measure_and_write(owned, subjects, tissues, atl, design, contrast_list, dev, native=native,
                                     batch_size=batch_size, progress=progress, prefix=name if name is not None
                                     else out.name)
        summary.update({"fingerprint": fingerprint, "settings": settings,
                        "seconds": {**summary["seconds"], "total": round(time.perf_counter() - t0, 3)}})
        owned.register("roi_summary.json")
        write_json(summary_path, summary)
        owned.finish(fingerprint)
    return summary


def _measure_and_write(owned: OwnedFolder, subjects, tissues, atl: Atlas, design, contrast_list, dev, *,
                       native: bool, batch_size: int, progress: bool, prefix: str) -> dict:
    """Measure every region and write the tables into the claimed folder; the summary (no fingerprint)."""
    out = owned.path
    if native:
        from vbmkit.workflows.roi_native import native_volumes

        regional, total, timing = native_volumes(subjects, tissues, atl, device=dev, progress=progress)
    else:
        regional, total, timing = template_volumes(subjects, tissues, atl, device=dev, batch_size=batch_size,
                                                   progress=progress)
    tivs = [subject_tiv_ml(s.maps["gm"], (split_kind(s.maps["gm"]) or ("", ""))[1]) for s in subjects]
    tables = volume_tables(subjects, tissues, atl, regional, total, tivs)
    stats = None
    if design is not None:
        stats = _roi_stats(regional, tissues, atl, design, contrast_list, dev)
    exports = [f"{prefix}_catROI_{atl.name}_V{tissue}.csv" for tissue in tissues]
    files = ["roi_long.csv", "roi_wide.csv", *exports] + (["roi_stats.csv"] if stats is not None else [])
    owned.register(*files)
    _write_csv(out / "roi_long.csv", tables["long"])
    _write_csv(out / "roi_wide.csv", tables["wide"])
    for tissue, export in zip(tissues, exports, strict=True):
        write_cat12_group_csv(out / export, tables["long"], tissue=tissue)
    if stats is not None:
        _write_csv(out / "roi_stats.csv", stats)
    r = regional.shape[-1]
    coverage = (regional[:, 0].sum(-1) / np.maximum(total[:, 0], 1e-12))
    return {"atlas": atl.name, "regions": r, "subjects": len(subjects), "tissues": list(tissues),
            "device": str(dev),
            "gm_fraction_in_atlas": {"median": float(np.median(coverage)), "min": float(coverage.min()),
                                     "max": float(coverage.max())},
            "files": files, "space": "native" if native else "template", "seconds": dict(timing)}


def volume_tables(subjects: Sequence[SubjectMaps], tissues: Sequence[str], atl: Atlas, regional: np.ndarray,
                  total: np.ndarray, tivs: Sequence[float | None]) -> dict[str, pd.DataFrame]:
    """Long and wide tables from (N, T, R) regional and (N, T) total volumes in mL.

    Returns ``{"long": ..., "wide": ...}``: the long table has the tissues plus ``region``
    (their sum in the region); the wide table one row per subject with ``<abbr>_<tissue>``,
    ``total_<tissue>`` (whole grid), ``atlas_<tissue>`` (inside the atlas) and ``TIV``.
    """
    tab = atl.table
    n, t, r = regional.shape
    with_region = np.concatenate([regional, regional.sum(axis=1, keepdims=True)], axis=1)  # + "region"
    names = [*tissues, "region"]
    long = pd.DataFrame({
        "subject": np.repeat([s.name for s in subjects], (t + 1) * r),
        "atlas": atl.name,
        "region_id": np.tile(tab["region_id"].to_numpy(), n * (t + 1)),
        "region": np.tile(tab["abbr"].to_numpy(), n * (t + 1)),
        "hemisphere": np.tile(tab["hemisphere"].to_numpy(), n * (t + 1)),
        "tissue": np.tile(np.repeat(names, r), n),
        "volume_ml": with_region.reshape(-1),
    })[LONG_COLUMNS]
    wide = pd.DataFrame({"subject": [s.name for s in subjects]})
    cols = {f"{abbr}_{tissue}": with_region[:, k, j]
            for k, tissue in enumerate(names) for j, abbr in enumerate(tab["abbr"])}
    wide = pd.concat([wide, pd.DataFrame(cols)], axis=1)
    for k, tissue in enumerate(tissues):
        wide[f"total_{tissue}"] = total[:, k]
        wide[f"atlas_{tissue}"] = regional[:, k].sum(-1)
    wide["TIV"] = [v if v is not None else np.nan for v in tivs]
    return {"long": long, "wide": wide}


def _roi_stats(regional: np.ndarray, tissues, atl: Atlas, design, contrasts, dev) -> pd.DataFrame:
    """Fit the design to every region x tissue volume; FDR across regions per contrast and tissue."""
    from vbmkit.stats.glm import fit
    from vbmkit.stats.inference import fdr_q

    n, t, r = regional.shape
    y = torch.from_numpy(regional.reshape(n, t * r).astype(np.float32))
    maps = fit(y, design.X, contrasts, device=dev, columns=design.columns)
    tab = atl.table
    rows = []
    for con in contrasts:
        res = maps[con.name]
        stat, p = res.stat.numpy().reshape(t, r), res.p.numpy().reshape(t, r)
        eff, std = res.effect.numpy().reshape(t, r), res.std_effect.numpy().reshape(t, r)
        for k, tissue in enumerate(tissues):
            q = fdr_q(p[k])
            rows.append(pd.DataFrame({
                "region": tab["abbr"], "region_id": tab["region_id"], "hemisphere": tab["hemisphere"],
                "tissue": tissue, "contrast": con.name, "kind": res.kind, "stat": stat[k],
                "df1": res.df[0], "df2": res.df[1], "p": p[k], "q_fdr": q, "effect": eff[k],
                "std_effect": std[k]}))
    return pd.concat(rows, ignore_index=True)[STATS_COLUMNS]
