"""Images <-> covariate rows: one copy of the matching and of the ``missing`` policy (glm, roi, study).

An image belongs to the row whose ID occurs in its file name (:func:`vbmkit.io.maps.match_ids`).
``missing="error"`` refuses images without a row and rows without an image, naming them;
``missing="drop"`` analyses only the subjects that have both, with a warning per kind of loss.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from vbmkit.errors import ConfigError, CovariateError
from vbmkit.io.maps import file_id, match_ids
from vbmkit.io.tables import check_covariates, read_covariates

MISSING_POLICIES = ("error", "drop")


def check_missing(missing: str) -> str:
    """Raise :class:`ConfigError` unless ``missing`` is ``error`` or ``drop``."""
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing: expected 'error' or 'drop'; got {missing!r}")
    return missing


def read_table(covariates: str | os.PathLike | pd.DataFrame, *, id_column: str) -> pd.DataFrame:
    """The covariate table from a CSV/TSV path or a DataFrame, checked (IDs unique, column present)."""
    if isinstance(covariates, pd.DataFrame):
        return check_covariates(covariates, id_column=id_column)
    return read_covariates(covariates, id_column=id_column)


def match_subjects(paths: Sequence[Path], table: pd.DataFrame, *, id_column: str, kind: str,
                   missing: str) -> tuple[list[Path], pd.DataFrame, dict[str, list[str]]]:
    """Match images to rows; apply the ``missing`` policy to unmatched ones.

    Parameters
    ----------
    paths : sequence of Path
        One image per subject (``kind`` maps, e.g. ``s6mwp1``).
    table : pandas.DataFrame
        Covariate rows holding ``id_column``; ``table.attrs["source"]`` names it in messages.
    missing : {"error", "drop"}

    Returns
    -------
    (paths, rows, dropped)
        The matched images and their rows in the table's order, and ``dropped``:
        ``images_without_row`` and ``rows_without_image``.

    Raises
    ------
    CovariateError
        With ``missing="error"`` for any unmatched image or row; always when nothing matches.
    """
    matched = match_ids(list(paths), list(table[id_column]), kind=kind)
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
    return list(matched.paths), used, dropped


def without_subjects(table: pd.DataFrame, names: Iterable[str], *, id_column: str) -> pd.DataFrame:
    """The rows whose ID is not in any of the map ``names`` (e.g. subjects excluded by QC)."""
    names = list(names)
    if not names:
        return table
    ids = list(table[id_column])
    drop = {file_id(Path(f"{n}.nii"), ids) for n in names} - {None}
    kept = table[~table[id_column].isin(drop)].reset_index(drop=True)
    kept.attrs["source"] = table.attrs.get("source", "covariate table")
    return kept


TIV = "TIV"  # the formula name of total intracranial volume (mL)


def find_volume_tables(entries: Iterable[str | os.PathLike], *, levels: int = 3) -> list[Path]:
    """The ``volumes.csv`` of the preprocessing folders holding ``entries`` (folders or map files).

    For each entry, the first ``volumes.csv`` found in the entry itself (a folder) or in one of its
    ``levels`` parent folders: a ``vbmkit preprocess`` folder keeps it beside its subject folders
    (``OUT/volumes.csv`` for ``OUT/<name>/mri/s6mwp1<name>.nii``); ``vbmkit simulate`` beside its truth.
    """
    found: list[Path] = []
    for entry in entries:
        p = Path(entry)
        folders = ([p] if p.is_dir() else []) + list(p.parents)[:levels]
        for folder in folders:
            candidate = folder / "volumes.csv"
            if candidate.is_file():
                if candidate not in found:
                    found.append(candidate)
                break
    return found


def merge_tiv(table: pd.DataFrame, volume_tables: Sequence[Path], *, id_column: str) -> tuple[pd.DataFrame, int]:
    """``table`` with a ``TIV`` column (mL) from the ``tiv_ml`` of ``volumes.csv`` tables.

    A volumes row belongs to the covariate row whose ID occurs in its ``name`` (the image name, as
    images are matched). Rows without one get NaN (the design's missing-value policy applies).

    Returns
    -------
    (table, matched)
        A copy of the table with ``TIV``, and the number of its rows that received a value.

    Raises
    ------
    CovariateError
        A table without the columns ``name`` and ``tiv_ml``.
    """
    ids = list(table[id_column])
    tiv: dict[str, float] = {}
    for path in volume_tables:
        volumes = pd.read_csv(path)
        absent = [c for c in ("name", "tiv_ml") if c not in volumes.columns]
        if absent:
            raise CovariateError(f"{path}: expected columns 'name' and 'tiv_ml' (a vbmkit volumes.csv); "
                                 f"missing {absent}")
        for name, value in zip(volumes["name"], volumes["tiv_ml"], strict=True):
            ident = file_id(Path(f"{name}.nii"), ids)
            if ident is not None:
                tiv[ident] = float(value)
    merged = table.copy()
    merged[TIV] = merged[id_column].map(tiv)
    merged.attrs.update(table.attrs)
    return merged, int(merged[TIV].notna().sum())
