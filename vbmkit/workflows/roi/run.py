"""``vbmkit roi``: modulated tissue maps + atlas -> regional volume tables (+ ROI statistics).

Orchestration only: volumes come from :mod:`vbmkit.stats.roi`, statistics from
:func:`vbmkit.stats.glm.fit` with the design and contrasts of :mod:`vbmkit.formula.design`
(the same as the voxel GLM); tables are written through :mod:`vbmkit.io.catroi`.
The output contract is in ``docs/roi.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vbmkit import __version__
from vbmkit.device import resolve_device
from vbmkit.errors import ConfigError
from vbmkit.formula.design import build_design, check_formula_columns, parse_contrasts
from vbmkit.io.atlas import Atlas, load_atlas
from vbmkit.io.atlas_catalog import resolve_atlas_names
from vbmkit.io.atomic import atomic_path
from vbmkit.io.catroi import LONG_COLUMNS, subject_tiv_ml, write_cat12_group_csv
from vbmkit.io.ownership import check_claimable
from vbmkit.stats.glm import fit
from vbmkit.stats.inference import fdr_q
from vbmkit.workflows.roi.inputs import (
    TISSUE_KINDS,
    SubjectMaps,
    common_tissues,
    find_subject_maps,
    split_kind,
)
from vbmkit.workflows.roi.maps import template_volumes
from vbmkit.workflows.roi.native import native_volumes
from vbmkit.workflows.stage import cached_run, fingerprint
from vbmkit.workflows.subjects import match_subjects, read_table

STATS_COLUMNS = ["atlas", "region", "region_id", "hemisphere", "tissue", "contrast", "kind", "stat", "df1", "df2",
                 "p", "q_fdr", "effect", "std_effect"]



def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")


def run_roi(images: Sequence[str | os.PathLike], *, out: str | os.PathLike, atlas: str | Sequence[str] = "lpba40",
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
    atlas : str or sequence of str
        ``lpba40``, another atlas name / NIfTI path (:func:`vbmkit.io.atlas.load_atlas`), several
        (``"lpba40,neuromorphometrics"`` or a list), ``all`` or ``cat12`` (neuromorphometrics,
        lpba40, cobra, hammers): :func:`vbmkit.io.atlas_catalog.resolve_atlas_names`. Every table
        has an ``atlas`` column; with several atlases the columns of ``roi_wide.csv`` are
        ``<atlas>.<abbr>_<tissue>`` and ``<atlas>.atlas_<tissue>``.
    covariates, id_column, formula, contrasts, standardize, missing
        As for ``vbmkit glm``: the ROI statistics fit the same design and contrasts to every
        region's volume (FDR across the regions of each atlas, per contrast and tissue).
    native : bool
        Measure in each subject's native space as CAT12 does (atlas carried into the subject
        through the inverse of the ``y_`` deformation, native ``p1``/``p2``/``p3`` summed per
        label) instead of summing the template-space modulated maps; needs ``p1<name>`` and
        ``y_<name>`` beside each ``mwp1<name>`` (see :mod:`vbmkit.workflows.roi.native`).
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
        subjects, used = _match_covariates(subjects, covariates, id_column=id_column, missing=missing,
                                           formula=formula)
        if formula is not None:
            design = build_design(used, formula, standardize=standardize, id_column=id_column, missing=missing)
            if len(design.table) < len(used):
                keep = set(design.table[id_column])
                subjects = [s for s in subjects if s.name in keep]
            contrast_list = parse_contrasts(dict(contrasts), design)
    names = resolve_atlas_names(atlas)
    atl = [load_atlas(a) for a in names]
    settings = {"atlas": ",".join(names), "native": native, "tissues": tissues, "formula": formula,
                "contrasts": dict(contrasts or {}), "standardize": standardize, "id_column": id_column, "missing": missing,
                "subjects": [s.name for s in subjects], "version": __version__}
    key = fingerprint(settings, [p for s in subjects for p in s.maps.values()],
                      tables=[used] if covariates is not None else [])
    prefix = name if name is not None else out.name

    def work(tmp: Path) -> dict:
        summary = _measure_and_write(tmp, subjects, tissues, atl, design, contrast_list, dev, native=native,
                                     batch_size=batch_size, progress=progress, prefix=prefix)
        summary.update({"fingerprint": key, "settings": settings,
                        "seconds": {**summary["seconds"], "total": round(time.perf_counter() - t0, 3)}})
        return summary

    return cached_run(out, command="roi", key=key, summary_name="roi_summary.json", work=work)


def _match_covariates(subjects: list[SubjectMaps], covariates, *, id_column: str, missing: str,
                      formula: str | None) -> tuple[list[SubjectMaps], pd.DataFrame]:
    """The subjects with a covariate row (named by their ID) and those rows, in the table's order."""
    table = read_table(covariates, id_column=id_column)
    if formula is not None:
        check_formula_columns(table, formula)
    by_gm = {s.maps["gm"]: s for s in subjects}
    paths, used, _ = match_subjects(list(by_gm), table, id_column=id_column, kind="mwp1", missing=missing)
    chosen = [SubjectMaps(i, by_gm[p].maps) for i, p in zip(used[id_column], paths, strict=True)]
    return chosen, used


def _measure_and_write(out: Path, subjects, tissues, atlases: list[Atlas], design, contrast_list, dev, *,
                       native: bool, batch_size: int, progress: bool, prefix: str) -> dict:
    """Measure every region of every atlas and write the tables into the (temporary) folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    regionals: list[np.ndarray] = []
    timing: dict[str, float] = {}
    groups: dict[tuple, list[int]] = {}  # atlases on one grid share each map read
    for k, a in enumerate(atlases):
        groups.setdefault((a.grid.shape, a.grid.affine.round(6).tobytes()), []).append(k)
    by_atlas: dict[int, np.ndarray] = {}
    for members in groups.values():
        if native:
            for k in members:
                by_atlas[k], total, tm = native_volumes(subjects, tissues, atlases[k], device=dev, progress=progress)
                timing = {key: timing.get(key, 0.0) + v for key, v in tm.items()}
        else:
            parts, total, tm = template_volumes(subjects, tissues, [atlases[k] for k in members], device=dev,
                                                batch_size=batch_size, progress=progress)
            by_atlas.update(zip(members, parts, strict=True))
            timing = {key: timing.get(key, 0.0) + v for key, v in tm.items()}
    regionals = [by_atlas[k] for k in range(len(atlases))]
    tivs = [subject_tiv_ml(s.maps["gm"], (split_kind(s.maps["gm"]) or ("", ""))[1]) for s in subjects]
    several = len(atlases) > 1
    longs, wides = [], []
    for atl, regional in zip(atlases, regionals, strict=True):
        tables = volume_tables(subjects, tissues, atl, regional, total, tivs)
        longs.append(tables["long"])
        wide = tables["wide"]
        if several:  # one row per subject: region columns named by atlas, totals and TIV once
            keep = ["subject", *(f"total_{t}" for t in tissues), "TIV"]
            wide = wide.rename(columns={c: f"{atl.name}.{c}" for c in wide.columns if c not in keep})
        wides.append(wide)
    long = pd.concat(longs, ignore_index=True)
    wide = wides[0]
    for w in wides[1:]:
        wide = wide.merge(w.drop(columns=[*(f"total_{t}" for t in tissues), "TIV"]), on="subject")
    if several:
        wide = wide[[c for c in wide.columns if c not in ("TIV", *(f"total_{t}" for t in tissues))]
                    + [f"total_{t}" for t in tissues] + ["TIV"]]
    stats = None
    if design is not None:
        stats = pd.concat([_roi_stats(r, tissues, a, design, contrast_list, dev)
                           for a, r in zip(atlases, regionals, strict=True)], ignore_index=True)
    exports = [(a, tissue, f"{prefix}_catROI_{a.name}_V{tissue}.csv") for a in atlases for tissue in tissues]
    files = ["roi_long.csv", "roi_wide.csv", *(e[2] for e in exports)] + (["roi_stats.csv"] if stats is not None else [])
    _write_csv(out / "roi_long.csv", long)
    _write_csv(out / "roi_wide.csv", wide)
    for a, tissue, export in exports:
        write_cat12_group_csv(out / export, long[long["atlas"] == a.name], tissue=tissue)
    if stats is not None:
        _write_csv(out / "roi_stats.csv", stats)
    per_atlas = {}
    for a, regional in zip(atlases, regionals, strict=True):
        coverage = regional[:, 0].sum(-1) / np.maximum(total[:, 0], 1e-12)
        per_atlas[a.name] = {"regions": int(regional.shape[-1]),
                             "gm_fraction_in_atlas": {"median": float(np.median(coverage)),
                                                      "min": float(coverage.min()), "max": float(coverage.max())}}
    first = per_atlas[atlases[0].name]
    return {"atlas": ",".join(a.name for a in atlases), "atlases": per_atlas,
            "regions": sum(v["regions"] for v in per_atlas.values()), "subjects": len(subjects),
            "tissues": list(tissues), "device": str(dev), "gm_fraction_in_atlas": first["gm_fraction_in_atlas"],
            "files": files, "space": "native" if native else "template",
            "seconds": {k: round(v, 3) for k, v in timing.items()}}


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
    """Fit the design to every region x tissue volume of one atlas; FDR across its regions per
    contrast and tissue (each atlas is its own family of tests)."""
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
                "atlas": atl.name, "region": tab["abbr"], "region_id": tab["region_id"],
                "hemisphere": tab["hemisphere"],
                "tissue": tissue, "contrast": con.name, "kind": res.kind, "stat": stat[k],
                "df1": res.df[0], "df2": res.df[1], "p": p[k], "q_fdr": q, "effect": eff[k],
                "std_effect": std[k]}))
    return pd.concat(rows, ignore_index=True)[STATS_COLUMNS]
