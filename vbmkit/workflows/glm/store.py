"""``vbmkit glm --store STORE``: the GLM streamed from a subject x voxel store (``vbmkit stack``).

The maps never sit in memory as one (N, V) matrix: the store is read one voxel block at a time
(all N subjects, ``width`` voxels), the block's mask is decided, the full-sample and subsample
fits of its voxels run (:func:`vbmkit.stats.glm.fit`, :func:`vbmkit.stats.subsample.fit_subsamples`
on the block) and only the per-voxel results (a few V-long maps) are kept. Peak memory is the
block (``N x width x 4`` bytes, bounded by ``memory_gb``) plus the fits' working memory, whatever
N x V is. Each voxel's fit depends on that voxel's column alone, so the maps equal those of
the in-memory path up to float32 rounding of the blocked products.

Subjects are matched to the covariate table by the store's subject IDs (the map names given
to ``vbmkit stack``), as file names are on the in-memory path. The mask is the GLM's rule
(``mask``, ``mask_threshold``, ``mask_rule`` and constant voxels left out, over the subjects of
the design) applied inside the store's own mask: write the store with a threshold no higher
than the GLM's. Permutations need every voxel of a permuted map at once and are refused here.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vbmkit import __version__
from vbmkit.config import GlmConfig
from vbmkit.errors import ConfigError
from vbmkit.formula.design import Design
from vbmkit.io.atomic import write_text
from vbmkit.io.maps import unmask
from vbmkit.io.nifti import save_volume
from vbmkit.io.store import Store, open_store
from vbmkit.report.glm_figures import plot_glass_brain
from vbmkit.stats.glm import fit
from vbmkit.stats.subsample import fit_subsamples
from vbmkit.workflows.compute import ComputeTarget, open_client
from vbmkit.workflows.glm.cluster_table import atlas_lookups
from vbmkit.workflows.glm.outputs import (
    _table,
    finish_summary,
    output_files,
    simple_effect_messages,
    stat_label,
    threshold_for,
    write_design,
    write_full_sample,
    write_subsample_maps,
)
from vbmkit.workflows.progress import ProgressStages
from vbmkit.workflows.subjects import match_subjects

#: Default memory for one store block and its fits when ``memory_gb`` is not set (bytes).
DEFAULT_BLOCK_BYTES = 1 << 30


@dataclass(frozen=True)
class StoreFit:
    """Results of the streamed fits: per-voxel maps under ``mask`` (RAS, on the store's grid)."""

    full: dict
    subsamples: dict | None
    mask: np.ndarray
    n_blocks: int


def match_store(store: Store, table: pd.DataFrame, *, id_column: str, kind: str,
                missing: str) -> tuple[np.ndarray, pd.DataFrame, dict[str, list[str]]]:
    """Rows of the store for the covariate rows: ``(rows (N,) int, used table, dropped)``.

    The store's subject IDs are matched like file names (an ID of ``id_column`` occurring in
    the subject name, ``kind`` prefixes such as ``s6mwp1`` allowed); ``missing`` as in
    :func:`vbmkit.workflows.subjects.match_subjects`.
    """
    # "<kind><name>.nii": the matcher strips the kind prefix, so the whole name is searched for an
    # ID (an ID equal to the name, or occurring in it, as "sub-01" in "s6mwp1sub-01")
    pseudo = [Path(f"{kind}{name}.nii") for name in store.subjects]
    index = {str(p): k for k, p in enumerate(pseudo)}
    paths, used, dropped = match_subjects(pseudo, table, id_column=id_column, kind=kind, missing=missing)
    dropped["images_without_row"] = [Path(p).stem[len(kind):] for p in dropped["images_without_row"]]
    return np.array([index[str(p)] for p in paths], dtype=np.int64), used, dropped


def block_width(store: Store, n_rows: int, memory_bytes: int) -> int:
    """Voxels per block: a whole number of store chunks when one fits, a quarter of the budget for the data."""
    width = max(1, memory_bytes // (4 * (store.shape[0] + n_rows) * 4))
    chunk = store.voxel_chunk
    return width - width % chunk if width >= chunk else width


def _concat(parts: list[dict]) -> dict:
    """Join per-block result dicts (contrast -> dataclass of (V_b,) tensors) along voxels."""
    out = {}
    for name, first in parts[0].items():
        joined = {}
        for f in fields(first):
            value = getattr(first, f.name)
            if isinstance(value, torch.Tensor) and value.ndim >= 1:
                joined[f.name] = torch.cat([getattr(p[name], f.name) for p in parts], dim=-1)
        out[name] = replace(first, **joined)
    return out


def fit_block(y: np.ndarray, design: Design, contrasts, settings: GlmConfig, weights, *, given: np.ndarray | None,
              dev: torch.device, memory: int, sub_thresholds: dict | None) -> tuple[np.ndarray, dict | None, dict | None]:
    """Mask and fit one voxel block: ``(keep (w,) bool, full-sample maps, subsample maps)`` of the kept voxels.

    Parameters
    ----------
    y : (N, w) float32 ndarray
        The block, rows in design order.
    given : (w,) bool ndarray, optional
        An explicit mask of the block's voxels; else ``settings``' mask rule over these N subjects.
    """
    if given is not None:
        keep = given.copy()
    elif settings.mask_rule == "all":
        keep = y.min(axis=0) > settings.mask_threshold
    else:
        keep = y.mean(axis=0, dtype=np.float64) > settings.mask_threshold
    keep &= y.max(axis=0) != y.min(axis=0)  # constant voxels have no variance, hence no t
    if not keep.any():
        return keep, None, None
    yt = torch.from_numpy(np.ascontiguousarray(y[:, keep]))
    full = fit(yt, design.X, contrasts, device=dev, memory_bytes=memory, columns=design.columns)
    sub = None
    if weights is not None:
        sub = fit_subsamples(yt, design.X, contrasts, weights, thresholds=sub_thresholds, device=dev,
                             memory_bytes=memory, columns=design.columns)
    return keep, full, sub


def fit_store_range(path: str, start: int, stop: int, rows: np.ndarray, design: Design, contrasts,
                    settings: GlmConfig, weights, sub_thresholds: dict | None, *, given: np.ndarray | None = None,
                    device: str = "cpu") -> tuple[np.ndarray, dict | None, dict | None]:
    """:func:`fit_block` of the store's voxels ``start:stop``, opening the store by path (a Dask task)."""
    store = open_store(path)
    block = store.block(start, stop)
    memory = int(settings.memory_gb * 1e9) if settings.memory_gb is not None else DEFAULT_BLOCK_BYTES
    return fit_block(block[rows], design, contrasts, settings, weights, given=given, dev=torch.device(device),
                     memory=memory, sub_thresholds=sub_thresholds)


def fit_store(store: Store, rows: np.ndarray, design: Design, contrasts, settings: GlmConfig, weights, *,
              mask: np.ndarray | None, dev: torch.device, sub_thresholds: dict | None,
              progress=None, client=None) -> StoreFit:
    """Stream the store's voxel blocks through the full-sample and subsample fits.

    Parameters
    ----------
    store : Store
    rows : (N,) int ndarray
        Store row of each design row.
    mask : (X, Y, Z) bool ndarray, optional
        Explicit RAS mask on the store's grid (``glm.mask``).
    sub_thresholds : dict, optional
        Per contrast, the statistic that counts a draw in ``stability`` (with ``weights``).
    progress : callable(done, total), optional
        Voxels of the store done.
    client : distributed.Client, optional
        Fit the blocks as Dask tasks on its workers (each opens the store, which must be on a
        file system they share); the per-voxel results come back here in block order.
    """
    memory = int(settings.memory_gb * 1e9) if settings.memory_gb is not None else DEFAULT_BLOCK_BYTES
    n_store, v = store.shape
    width = block_width(store, len(rows), memory)
    inside = np.flatnonzero(store.mask.reshape(-1))  # store column -> flat grid index
    given = mask.reshape(-1)[inside] if mask is not None else None
    identity = len(rows) == n_store and bool((rows == np.arange(n_store)).all())
    full_parts, sub_parts, keep_all = [], [], np.zeros(v, dtype=bool)
    ranges = [(start, min(start + width, v)) for start in range(0, v, width)]
    futures = [client.submit(fit_store_range, str(store.path), a, b, rows, design, contrasts, settings, weights,
                             sub_thresholds, given=given[a:b] if given is not None else None, device=str(dev),
                             pure=False) for a, b in ranges] if client is not None else None
    for i, (start, stop) in enumerate(ranges):
        if futures is not None:
            keep, full, sub = futures[i].result()
            futures[i] = None  # release the worker's copy
        else:
            block = store.block(start, stop)  # (N_store, w) float32: one read of these chunks
            y = block if identity else block[rows]  # design order
            del block
            keep, full, sub = fit_block(y, design, contrasts, settings, weights,
                                        given=given[start:stop] if given is not None else None, dev=dev,
                                        memory=memory, sub_thresholds=sub_thresholds)
            del y
        keep_all[start:stop] = keep
        if full is not None:
            full_parts.append(full)
        if sub is not None:
            sub_parts.append(sub)
        if progress is not None:
            progress(stop, v)
    if not keep_all.any():
        raise ConfigError(f"store {store.path}: expected voxels passing the GLM mask ({settings.mask_rule} > "
                          f"{settings.mask_threshold}, not constant); none of its {v} voxels does")
    final = np.zeros(store.grid.n_voxels, dtype=bool)
    final[inside[keep_all]] = True
    return StoreFit(full=_concat(full_parts), subsamples=_concat(sub_parts) if sub_parts else None,
                    mask=final.reshape(store.grid.shape), n_blocks=-(-v // width))


def compute_and_write_store(store: Store, rows: np.ndarray, design: Design, contrasts, settings: GlmConfig, weights,
                            *, mask: np.ndarray | None, dev: torch.device, tmp: Path, progress: bool,
                            id_column: str, scheduler: str | None = None) -> dict:
    """Fit from the store and write the maps, tables and figures of ``docs/glm.md`` into ``tmp``.

    With ``scheduler`` (a running Dask scheduler's address or scheduler file) the voxel blocks
    are fitted on its workers (:func:`fit_store_range`).
    """
    if settings.permutations > 0:
        raise ConfigError(f"glm.store: permutations need whole maps in memory and are not run from a store; "
                          f"got permutations {settings.permutations} (set 0, or give the maps)")
    for message in simple_effect_messages(design, contrasts):
        warnings.warn(message, stacklevel=2)
    X = design.X
    # (df1, df2) as the fit gives them: contrast rank, N - P (the design is checked full rank)
    df1 = {c.name: float(np.linalg.matrix_rank(np.atleast_2d(np.asarray(c.matrix, dtype=np.float64))))
           for c in contrasts}
    thresholds = {c.name: threshold_for(c.kind, (df1[c.name], float(X.shape[0] - X.shape[1])), settings)
                  for c in contrasts}
    sub_thresholds = None
    if weights is not None:
        m = int(torch.as_tensor(weights)[0].sum())
        sub_thresholds = {c.name: threshold_for(c.kind, (df1[c.name], float(m - X.shape[1])), settings)
                          for c in contrasts}
    t = time.perf_counter()
    with ProgressStages(enabled=progress) as stages, \
            open_client(ComputeTarget(scheduler=scheduler)) as client:
        res = fit_store(store, rows, design, contrasts, settings, weights, mask=mask, dev=dev,
                        sub_thresholds=sub_thresholds, client=client,
                        progress=stages.callback("store blocks (full sample and subsamples)", unit="voxels"))
    timings = {"read_and_fit": time.perf_counter() - t}
    t = time.perf_counter()
    grid, stored, mask_final = store.grid, store.stored_affine, res.mask

    def save(rel: str, values, *, fill: float = 0.0, description: str | None = None) -> None:
        save_volume(tmp / rel, unmask(values, mask_final, fill=fill), grid.affine, dtype=np.float32,
                    orientation_of=stored, description=description)

    save_volume(tmp / "mask.nii.gz", mask_final.astype(np.uint8), grid.affine, dtype=np.uint8, orientation_of=stored)
    write_design(tmp, X, design, id_column)
    lookups = atlas_lookups()
    per_contrast: dict[str, dict] = {}
    for c in contrasts:
        r = res.full[c.name]
        files = output_files(c.kind, subsamples=res.subsamples is not None, permutations=False)
        df1, df2 = (float(x) for x in r.df)
        q = write_full_sample(save, c, r, files)
        if res.subsamples is not None:
            write_subsample_maps(save, c.name, res.subsamples[c.name], files)
        stat_map = unmask(r.stat, mask_final)
        table = _table(r, None, None, q, stat_map, c, (df1, df2), settings, mask_final, grid.affine,
                       thresholds[c.name], lookups)
        write_text(tmp / c.name / files["clusters"], table.to_csv(index=False))
        stat_name, dfs = stat_label(c.kind, r.df)
        plot_glass_brain(stat_map, grid.affine, tmp / c.name / files["glass_brain"], threshold=thresholds[c.name],
                         title=f"{c.name}: {stat_name} > {thresholds[c.name]:.2f} (df {dfs})", two_sided=c.kind == "t")
        stat = r.stat.numpy()
        per_contrast[c.name] = {
            "type": c.kind, "matrix": np.asarray(c.matrix).tolist(), "df": [df1, df2],
            "max_statistic": float(np.max(stat)), "min_statistic": float(np.min(stat)),
            "threshold": thresholds[c.name], "n_voxels_q_fdr_below_0.05": int((np.asarray(q) < 0.05).sum()),
            "n_voxels_p_fwe_below_0.05": None, "n_clusters": int(table["cluster"].nunique()),
            "files": {k: f"{c.name}/{v}" for k, v in files.items()},
        }
        if sub_thresholds is not None:
            per_contrast[c.name]["subsample_threshold"] = sub_thresholds[c.name]
    summary = {
        "vbmkit_version": __version__, "n_subjects": int(X.shape[0]), "n_voxels": int(mask_final.sum()),
        "grid": {"shape": list(grid.shape), "affine": np.asarray(stored).tolist()},
        "formula": design.formula, "design_columns": design.columns,
        "standardized": {k: {"mean": m, "sd": s} for k, (m, s) in design.scaling.items()},
        "subjects": [str(i) for i in design.table[id_column]],
        "images": [store.sources[k] for k in rows], "store": str(store.path), "store_blocks": res.n_blocks,
        "device": str(dev), "settings": settings.model_dump(mode="json"),
        "files": {"mask": "mask.nii.gz", "design_csv": "design.csv", "design_png": "design.png"},
        "contrasts": per_contrast,
    }
    return finish_summary(tmp, summary, timings, t)
