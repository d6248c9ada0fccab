"""``vbmkit glm``: maps + covariates -> design -> full-sample, subsample and permutation maps.

Orchestration only: every number comes from :mod:`vbmkit.stats`; files are read and written
through :mod:`vbmkit.io`; the maps, tables and figures by :mod:`vbmkit.workflows.glm.outputs`.

Everything that can be checked is checked before the first voxel is read, and all outputs are
written into a temporary folder inside ``out`` whose files are moved into place at the end
(:func:`vbmkit.workflows.stage.cached_run`); ``out`` is claimed first (:mod:`vbmkit.io.ownership`):
a folder holding files vbmkit did not write is refused, and only files an earlier ``vbmkit glm`` listed in its stamp are replaced or removed.
A rerun with the same inputs and settings finds the stamp complete and returns ``summary.json``
without recomputing. The output contract is in ``docs/glm.md``.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from vbmkit import __version__
from vbmkit.allocator import tune_cpu_allocator
from vbmkit.config import GlmConfig
from vbmkit.device import resolve_device
from vbmkit.errors import ConfigError, CovariateError, DesignError
from vbmkit.formula.design import (
    Design,
    build_design,
    check_formula_columns,
    formula_variables,
    parse_contrasts,
    tiv_correlations,
)
from vbmkit.io.maps import check_grids, find_maps, load_mask
from vbmkit.io.ownership import check_claimable
from vbmkit.io.store import open_store
from vbmkit.stats.subsample import draw_subsamples
from vbmkit.workflows.glm.outputs import compute_and_write
from vbmkit.workflows.glm.resources import check_glm_resources
from vbmkit.workflows.glm.store import compute_and_write_store, match_store
from vbmkit.workflows.stage import cached_run, fingerprint
from vbmkit.workflows.subjects import (
    TIV,
    check_missing,
    find_volume_tables,
    match_subjects,
    merge_tiv,
    read_table,
)


def _draw(design: Design, settings: GlmConfig) -> torch.Tensor | None:
    """The (K, N) subsample draws, checked before any image is read (None without subsamples)."""
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


def _blocks(design: Design, settings: GlmConfig):
    """Exchangeability block codes (N,) from the ``blocks`` column, checked before any image is read."""
    if settings.blocks is None:
        return None
    if settings.blocks not in design.table.columns:
        raise CovariateError(f"blocks: expected a column {settings.blocks!r} in the covariate table; "
                             f"its columns are {list(map(str, design.table.columns))}")
    values = design.table[settings.blocks]
    if values.isna().any():
        raise CovariateError(f"blocks: column {settings.blocks!r} has missing values; expected a block label for "
                             f"every subject")
    return pd.factorize(values.astype(str))[0]


def _with_tiv(table: pd.DataFrame, formula: str, maps: Sequence[Path], *, id_column: str) -> pd.DataFrame:
    """Covariates with ``TIV`` from the ``volumes.csv`` beside the maps when the formula uses TIV and the
    table has no such column (as ``vbmkit run`` merges it); said in a warning naming the table."""
    if TIV in table.columns or TIV not in formula_variables(formula):
        return table
    tables = find_volume_tables(maps)
    if not tables:
        return table  # check_formula_columns names the missing column
    merged, n = merge_tiv(table, tables, id_column=id_column)
    names = ", ".join(str(t) for t in tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
    warnings.warn(f"TIV: taken from column tiv_ml of {names} for {n} of {len(table)} covariate rows "
                  "(the covariate table has no TIV column)", stacklevel=3)
    return merged


def run_glm(images: Sequence[str | os.PathLike], covariates: str | os.PathLike | pd.DataFrame, *,
            id_column: str, settings: GlmConfig, out: str | os.PathLike, missing: str = "error",
            device: str = "auto", progress: bool = True, store: str | os.PathLike | None = None,
            scheduler: str | None = None) -> dict:
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
    store : path, optional
        A subject x voxel store (``vbmkit stack``; default ``settings.store``) to stream the maps
        from instead of ``images`` (which must then be empty): subjects are matched by the
        store's IDs and memory stays bounded (:mod:`vbmkit.workflows.glm.store`).
    scheduler : str, optional
        With a store: fit its voxel blocks on the workers of this running Dask scheduler
        (address or scheduler file); the store must be on a file system they share.

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
    tune_cpu_allocator()  # keep freed tensors' memory for reuse: same results, far fewer page faults
    out = Path(out)
    check_missing(missing)
    check_claimable(out, command="glm")
    store = store if store is not None else settings.store
    if scheduler is not None and store is None:
        raise ConfigError(f"scheduler {scheduler}: expected a store to fit on the workers (--store); got maps")
    if store is not None and images:
        raise ConfigError(f"images: expected either maps or a store; got {len(images)} map inputs and store {store}")
    opened = rows = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_table(covariates, id_column=id_column)
        opened = open_store(store) if store is not None else None
        found = find_maps(images, kind=settings.maps) if opened is None else [Path(s) for s in opened.sources]
        table = _with_tiv(table, settings.formula, found, id_column=id_column)
        check_formula_columns(table, settings.formula)
        if opened is not None:  # subjects by the store's IDs
            rows, used, dropped = match_store(opened, table, id_column=id_column, kind=settings.maps, missing=missing)
            paths = [Path(opened.sources[k]) for k in rows]
        else:
            paths, used, dropped = match_subjects(found, table, id_column=id_column, kind=settings.maps,
                                                  missing=missing)
        design = build_design(used, settings.formula, standardize=settings.standardize, id_column=id_column,
                              missing=missing)
        if len(design.table) < len(used):  # rows with missing values were dropped
            keep = set(design.table[id_column])
            dropped["rows_with_missing_values"] = [i for i in used[id_column] if i not in keep]
            kept = [i in keep for i in used[id_column]]
            paths = [p for p, k in zip(paths, kept, strict=True) if k]
            rows = rows[kept] if rows is not None else None
        contrasts = parse_contrasts(settings.contrasts, design)
        tiv_correlations(design, contrasts)
        if opened is None:  # a store is streamed: its memory does not grow with N x V
            check_glm_resources(design, contrasts, settings, paths, device=device)  # before any allocation
        weights = _draw(design, settings)
        blocks = _blocks(design, settings)
        dev = resolve_device(device if device != "auto" else settings.device)
        grid = check_grids(paths) if opened is None else opened.grid
        reference = paths[0] if opened is None else opened.path
        mask = load_mask(Path(settings.mask), grid, reference=reference) if settings.mask is not None else None
    messages = [str(w.message) for w in caught]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    mask_file = [Path(settings.mask)] if settings.mask is not None and Path(settings.mask).is_file() else []
    sources = [*paths, *mask_file] if opened is None else [opened.path / "zarr.json", *mask_file]
    key = fingerprint({"settings": settings.model_dump(mode="json"), "id_column": id_column, "missing": missing,
                       "version": __version__, "store": str(opened.path.resolve()) if opened else None},
                      sources, tables=[design.table])

    def work(tmp: Path) -> dict:
        with warnings.catch_warnings(record=True) as late:
            warnings.simplefilter("always")
            if opened is not None:
                summary = compute_and_write_store(opened, rows, design, contrasts, settings, weights, mask=mask,
                                                  dev=dev, tmp=tmp, progress=progress, id_column=id_column,
                                                  scheduler=scheduler)
            else:
                summary = compute_and_write(paths, design, contrasts, settings, weights, mask=mask, dev=dev,
                                            tmp=tmp, progress=progress, id_column=id_column, blocks=blocks)
        for w in late:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        summary.update({"dropped": dropped, "warnings": messages + [str(w.message) for w in late],
                        "fingerprint": key, "seconds": round(time.perf_counter() - t0, 3)})
        return summary

    return cached_run(out, command="glm", key=key, summary_name="summary.json", work=work)
