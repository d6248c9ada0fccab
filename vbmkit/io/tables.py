"""Covariate tables: CSV or TSV (BIDS ``participants.tsv``) read into a checked DataFrame.

BIDS writes missing values as ``n/a``; CSV exports often leave the cell empty or write ``NA``.
All of these become missing (NaN). Subject IDs are always read as text, so ``007`` stays
``007`` and matches the file name ``s6mwp1007.nii``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vbmkit.errors import CovariateError

#: Strings read as missing values (BIDS ``n/a`` and the usual CSV spellings).
MISSING_VALUES = ("n/a", "N/A", "NA", "NaN", "nan", "")


def _separator(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv":
        return ","
    # Unknown suffix: sniff from the header line (tab wins when the header holds one).
    with path.open(encoding="utf-8-sig") as fh:
        header = fh.readline()
    return "\t" if "\t" in header else ","


def read_covariates(path: str | os.PathLike, *, id_column: str) -> pd.DataFrame:
    """Read a covariate table and check its ID column.

    Parameters
    ----------
    path : path
        CSV (``,``) or TSV (tab; ``.tsv`` such as BIDS ``participants.tsv``). Other suffixes
        are sniffed from the header line.
    id_column : str
        Column holding the subject IDs (e.g. ``participant_id``).

    Returns
    -------
    pandas.DataFrame
        One row per subject, the ID column as stripped text, every other column as pandas
        infers it (numbers as float/int, the rest as text), ``n/a`` and empty cells as NaN.
        ``df.attrs["source"]`` holds the file name for later error messages.

    Raises
    ------
    CovariateError
        When the file is missing or unreadable, has no ``id_column``, an empty ID, or
        duplicate IDs (all listed).
    """
    p = Path(path)
    if p.is_dir():
        raise CovariateError(f"covariates {p}: expected a CSV or TSV file; got a folder")
    if not p.is_file():
        raise CovariateError(f"covariates {p}: expected a CSV or TSV file; it does not exist")
    try:
        table = pd.read_csv(p, sep=_separator(p), dtype={id_column: str}, na_values=list(MISSING_VALUES),
                            keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:  # pandas raises ParserError, UnicodeDecodeError, EmptyDataError ...
        raise CovariateError(f"covariates {p}: expected a CSV or TSV table; pandas could not read it "
                             f"({type(exc).__name__}: {exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    table.attrs["source"] = str(p)
    return check_covariates(table, id_column=id_column, source=str(p))


def check_covariates(table: pd.DataFrame, *, id_column: str, source: str | None = None) -> pd.DataFrame:
    """Check the ID column of an in-memory table; return a copy with IDs as stripped text.

    Raises
    ------
    CovariateError
        No ``id_column``, missing/empty IDs, or duplicate IDs.
    """
    where = source if source is not None else table.attrs.get("source", "covariate table")
    if id_column not in table.columns:
        raise CovariateError(f"covariates {where}: expected an ID column {id_column!r}; the columns are "
                             f"{list(map(str, table.columns))} (set --id-column / inputs.id_column)")
    out = table.copy()
    ids = out[id_column]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        rows = [int(i) + 2 for i in range(len(out)) if empty.iloc[i]]  # +2: header line, 1-based
        raise CovariateError(f"covariates {where}: expected an ID in every row of column "
                             f"{id_column!r}; lines {rows[:20]} have none")
    out[id_column] = ids.astype(str).str.strip()
    dup = out[id_column][out[id_column].duplicated(keep=False)]
    if len(dup):
        raise CovariateError(f"covariates {where}: expected unique IDs in column {id_column!r}; "
                             f"duplicated: {sorted(set(dup))[:20]}")
    out.attrs["source"] = where
    return out.reset_index(drop=True)


def check_numeric(table: pd.DataFrame, columns: Sequence[str], *, source: str | None = None) -> None:
    """Raise when a column meant to be numeric holds text that is not a number.

    Raises
    ------
    CovariateError
        Naming the column and the first offending values (with their IDs when known).
    """
    where = source if source is not None else table.attrs.get("source", "covariate table")
    for col in columns:
        if col not in table.columns:
            raise CovariateError(f"covariates {where}: expected a column {col!r}; the columns are "
                                 f"{list(map(str, table.columns))}")
        values = table[col]
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            infinite = values[np.isinf(values.to_numpy(dtype=float))]
            if len(infinite):
                lines = [int(i) + 2 for i in infinite.index[:5]]  # +2: header line, 1-based
                raise CovariateError(f"covariates {where}: expected finite numbers in column {col!r}; "
                                     f"found {infinite.iloc[0]} on line{'s' if len(lines) > 1 else ''} "
                                     f"{', '.join(map(str, lines))}")
            continue
        converted = pd.to_numeric(values, errors="coerce")
        bad = values[converted.isna() & values.notna()]
        if len(bad):
            shown = ", ".join(repr(v) for v in bad.astype(str).unique()[:5])
            raise CovariateError(f"covariates {where}: expected numbers in column {col!r}; found {shown} "
                                 f"(wrap it as C({col}) in the formula if it is categorical)")
