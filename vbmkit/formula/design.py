"""From a covariate table and a formula to a design matrix and named contrasts (formulaic).

The formula is the right-hand side of a Wilkinson formula (``age + C(sex) + TIV``); an
intercept is added. Text columns and ``C(x)`` are coded with treatment (dummy) coding against
the first level in sorted order, so ``C(group)`` with levels ``ctrl``/``depr`` gives the column
``C(group)[T.depr]`` (depr minus the reference ``ctrl``).

Contrast expressions (:func:`parse_contrasts`):

* a column expression: ``age``, ``-age``, ``C(group)[T.depr]``, ``a - b``, ``2*a - b`` (t);
* a numeric vector with one weight per design column: ``[0, 1, 0]`` or ``"0 1 0"`` (t);
* a matrix, one row per tested combination: ``[[0, 1, 0], [0, 0, 1]]`` or ``"0 1 0; 0 0 1"`` (F);
* a list of expressions: ``F: age, C(sex)[T.m]`` (F);
* a whole term such as ``C(site)``: every column of that term (F), whatever its number of levels.

Formulas and contrast expressions are checked against the whitelist grammar of
:mod:`vbmkit.formula.grammar` before formulaic sees them (formulaic evaluates parts of a
formula as Python), and every contrast weight must be a finite number.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from vbmkit.errors import ConfigError, CovariateError, DesignError
from vbmkit.formula.grammar import check_contrast as check_contrast_grammar
from vbmkit.formula.grammar import check_formula, is_numeric_contrast
from vbmkit.io.tables import check_numeric
from vbmkit.stats.design import Contrast, check_contrast, check_design

_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
#: Names a folder cannot carry on Windows (outputs may be copied there).
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


@dataclass(frozen=True, eq=False)
class Design:
    """A design matrix and what is needed to read contrasts against it.

    Attributes
    ----------
    X : numpy.ndarray
        (N, P) float64, one row per subject in ``table`` order.
    columns : list of str
        P column names (``Intercept``, ``age``, ``C(sex)[T.m]``, ...).
    factor_columns : dict of str to list of int
        Every formula term and the indices of its columns (``"C(site)": [3, 4]``).
    table : pandas.DataFrame
        The covariate rows used (rows with missing values dropped when asked).
    formula : str
    scaling : dict of str to (float, float)
        Continuous variables that were standardised and their (mean, SD) in original units.
    """

    X: np.ndarray
    columns: list[str]
    factor_columns: dict[str, list[int]]
    table: pd.DataFrame
    formula: str
    scaling: dict[str, tuple[float, float]] = field(default_factory=dict)
    spec: object = None  # formulaic ModelSpec, for linear-constraint parsing


def formula_variables(formula: str) -> list[str]:
    """Data columns a formula needs (sorted).

    Raises
    ------
    ConfigError
        A formula outside the grammar of :func:`vbmkit.formula.grammar.check_formula`
        (checked before formulaic sees it), a left-hand side, or one formulaic cannot parse.
    """
    check_formula(formula)
    try:
        return sorted(str(v) for v in Formula(formula).required_variables)
    except Exception as exc:  # formulaic raises its own parser errors
        raise ConfigError(f"formula {formula!r}: expected a formula such as 'age + C(sex) + TIV'; "
                          f"could not parse it ({exc})") from exc


def _mixed_numeric(values: pd.Series) -> bool:
    """True for text columns where some cells are numbers and some are not (a typo, not a factor)."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    present = values.dropna()
    parsed = pd.to_numeric(present, errors="coerce")
    return bool(parsed.notna().any() and parsed.isna().any())


def _is_number(values: pd.Series) -> bool:
    """True for numeric columns (checked for Inf by :func:`check_numeric`)."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def check_formula_columns(table: pd.DataFrame, formula: str) -> list[str]:
    """The formula's variables, after checking that every one is a column of ``table``.

    Called before images are matched to rows, so a misspelt column is the first thing reported.

    Raises
    ------
    CovariateError
        Naming the absent variables, the table (``table.attrs["source"]``) and its columns.
    """
    variables = formula_variables(formula)
    absent = [v for v in variables if v not in table.columns]
    if absent:
        where = table.attrs.get("source", "covariate table")
        raise CovariateError(f"formula {formula!r}: expected columns {absent} in {where}; its columns are "
                             f"{list(map(str, table.columns))}")
    return variables


def build_design(table: pd.DataFrame, formula: str, *, standardize: bool = True, id_column: str | None = None,
                 missing: str = "error") -> Design:
    """Build the (N, P) design matrix of ``formula`` from ``table``.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subject (see :func:`vbmkit.io.tables.read_covariates`).
    formula : str
        Right-hand side, e.g. ``age + C(sex) + TIV``; an intercept is always added.
    standardize : bool
        Centre and scale (SD, ddof=1) every numeric variable that is not wrapped in ``C()``.
        t, F and p are unchanged; betas and effects become per SD of the covariate.
    id_column : str, optional
        Named in messages about missing values.
    missing : {"error", "drop"}
        Rows with a missing value in a formula variable: stop listing them, or drop them with
        a warning.

    Raises
    ------
    CovariateError
        A formula column is absent, has missing values (``missing="error"``), or mixes numbers
        with text.
    DesignError
        Rank-deficient design or fewer subjects than columns + 2 (:func:`check_design`).
    """
    where = table.attrs.get("source", "covariate table")
    variables = check_formula_columns(table, formula)  # checks the grammar first
    categorical = set(check_formula(formula).categorical)
    check_numeric(table, [v for v in variables if v not in categorical and (_mixed_numeric(table[v])
                                                                             or _is_number(table[v]))],
                  source=where)
    work = table.copy()
    has_na = work[variables].isna().any(axis=1)
    if has_na.any():
        labels = list(work.loc[has_na, id_column]) if id_column in work.columns else list(work.index[has_na])
        cols = [v for v in variables if work[v].isna().any()]
        msg = (f"covariates {where}: {int(has_na.sum())} rows have missing values in formula columns "
               f"{cols}: {labels[:20]}")
        if missing != "drop":
            raise CovariateError(f"{msg} (expected complete rows; use --missing drop to leave them out)")
        warnings.warn(f"{msg}; dropped (--missing drop)", stacklevel=2)
        work = work.loc[~has_na].reset_index(drop=True)
    scaling: dict[str, tuple[float, float]] = {}
    for v in variables:
        col = work[v]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if col.nunique(dropna=True) <= 1:
            # Numeric constants are reported by check_design (column-wise); a one-level factor
            # gives no column at all, so say it here.
            if not numeric or v in categorical:
                warnings.warn(f"covariate {v!r} is constant ({col.iloc[0]!r} in all {len(col)} rows); "
                              "it cannot be estimated beside the intercept", stacklevel=2)
            continue
        if standardize and v not in categorical and numeric:
            mean, sd = float(col.mean()), float(col.std(ddof=1))
            work[v] = (col - mean) / sd
            scaling[v] = (mean, sd)
    try:
        # context={}: names resolve to the data and formulaic's transforms only, not to this frame
        mm = model_matrix(formula, work, context={}, ensure_full_rank=True, na_action="raise")
    except Exception as exc:
        raise DesignError(f"formula {formula!r}: formulaic could not build the design from {where} "
                          f"({type(exc).__name__}: {exc})") from exc
    columns = [str(c) for c in mm.columns]
    X = np.asarray(mm, dtype=np.float64)
    spec = mm.model_spec
    factor_columns = {str(t): list(range(s.start, s.stop)) for t, s in spec.term_slices.items()}
    check_design(X, columns)
    return Design(X=X, columns=columns, factor_columns=factor_columns, table=work, formula=formula,
                  scaling=scaling, spec=spec)


def check_contrast_name(name: str) -> str:
    """Raise unless ``name`` can be a folder name on every platform (letters, digits, ``_.+-``)."""
    if not isinstance(name, str) or not _VALID_NAME.match(name) or name.lower() in _RESERVED:
        raise ConfigError(f"contrast name {name!r}: expected a folder name of letters, digits and _ . + - "
                          "(starting with a letter or digit, at most 100 characters)")
    return name


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets: ``C(x, Sum)[S.a], age`` -> two parts."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _numeric(name: str, text: str) -> tuple[np.ndarray, bool]:
    """Parse ``"0 1 0"``, ``"0 1 0; 0 0 1"``, ``"[0, 1, 0]"`` or ``"[[0, 1, 0], [0, 0, 1]]"``.

    Returns the (Q, P) matrix and whether it was written as a matrix (then an F contrast).
    ``text`` has passed :func:`~vbmkit.formula.grammar.check_contrast` (numbers only,
    at most two levels of brackets), so ``ast.literal_eval`` only ever sees nested number lists.
    """
    t = text.strip()
    try:
        if t.startswith("["):
            m = np.asarray(ast.literal_eval(t), dtype=np.float64)
        else:
            m = np.asarray([[float(x) for x in re.split(r"[\s,]+", row.strip()) if x]
                            for row in t.split(";") if row.strip()], dtype=np.float64)
            m = m[0] if ";" not in t else m
    except (ValueError, SyntaxError) as exc:
        raise ConfigError(f"contrast {name!r}: expected numbers such as '0 1 0' or '0 1 0; 0 0 1'; "
                          f"got {text!r}") from exc
    if m.ndim not in (1, 2):
        raise ConfigError(f"contrast {name!r}: expected a vector or a matrix; got shape {m.shape}")
    return np.atleast_2d(m), m.ndim == 2


def _expression_rows(name: str, expr: str, design: Design) -> np.ndarray:
    if expr in design.factor_columns and expr not in design.columns:
        idx = design.factor_columns[expr]
        rows = np.zeros((len(idx), len(design.columns)))
        rows[np.arange(len(idx)), idx] = 1.0
        return rows
    try:
        lc = design.spec.get_linear_constraints(expr)
    except Exception as exc:  # KeyError for unknown names, parser errors
        raise ConfigError(f"contrast {name!r}: expected an expression of the design columns "
                          f"{design.columns} or a term {list(design.factor_columns)}; got {expr!r} ({exc})") from exc
    if np.any(np.asarray(lc.constraint_values) != 0):
        raise ConfigError(f"contrast {name!r}: expected a combination tested against 0; got {expr!r}")
    return np.asarray(lc.constraint_matrix, dtype=np.float64)


def parse_contrast(name: str, expr: str | Sequence[float] | Sequence[Sequence[float]], design: Design) -> Contrast:
    """Turn one contrast specification into a :class:`Contrast` checked against ``design``.

    A single row is a t contrast unless the specification is a matrix, an ``F:`` list or a
    whole term, which are F contrasts (even with one row).

    Raises
    ------
    ConfigError
        An invalid name, an expression outside the grammar of
        :func:`vbmkit.formula.grammar.check_contrast`, unknown column, wrong vector
        length, a weight that is not a finite number.
    DesignError
        A contrast outside the row space of the design (:func:`check_contrast`).
    """
    check_contrast_name(name)
    check_contrast_grammar(name, expr)  # before formulaic parses the expression
    p = len(design.columns)
    kind = "t"
    if isinstance(expr, str) and is_numeric_contrast(expr):
        matrix, is_matrix = _numeric(name, expr)
        kind = "F" if is_matrix else "t"
    elif isinstance(expr, str):
        text = expr.strip()
        if text[:2].lower() == "f:":
            kind = "F"
            parts = _split_top(text[2:])
            if not parts:
                raise ConfigError(f"contrast {name!r}: expected columns after 'F:'; got {expr!r}")
            matrix = np.vstack([_expression_rows(name, part, design) for part in parts])
        else:
            matrix = _expression_rows(name, text, design)
            if (text in design.factor_columns and text not in design.columns) or matrix.shape[0] > 1:
                kind = "F"
    else:
        arr = np.asarray(expr, dtype=np.float64)
        if arr.ndim == 2:
            kind = "F"
        elif arr.ndim != 1:
            raise ConfigError(f"contrast {name!r}: expected a vector or a matrix; got shape {arr.shape}")
        matrix = np.atleast_2d(arr)
    if matrix.shape[1] != p:
        raise ConfigError(f"contrast {name!r}: expected {p} weights, one per design column {design.columns}; "
                          f"got {matrix.shape[1]}")
    if not np.all(np.isfinite(matrix)):
        raise ConfigError(f"contrast {name!r}: expected finite weights; got {matrix.tolist()}")
    contrast = Contrast(name=name, matrix=matrix, kind=kind)
    check_contrast(contrast, design.X, design.columns)
    return contrast


def parse_contrasts(spec: Mapping[str, str | Sequence[float] | Sequence[Sequence[float]]],
                    design: Design) -> list[Contrast]:
    """Parse every named contrast (see the module docstring for the forms accepted).

    Raises
    ------
    ConfigError
        No contrasts, a repeated name (case-insensitively, as folders), or a bad contrast.
    """
    if not spec:
        raise ConfigError("contrasts: expected at least one NAME=EXPR; got none")
    seen: dict[str, str] = {}
    for name in spec:
        key = str(name).lower()
        if key in seen:
            raise ConfigError(f"contrast names {seen[key]!r} and {name!r}: expected distinct folder names")
        seen[key] = name
    return [parse_contrast(str(n), e, design) for n, e in spec.items()]


def _is_tiv(column: str) -> bool:
    return bool(re.search(r"(^|[^a-z])tiv($|[^a-z])", column.lower())) or "intracranial" in column.lower()


def tiv_correlations(design: Design, contrasts: Sequence[Contrast], *, threshold: float = 0.5) -> list[str]:
    """Warn when TIV correlates with a variable of interest (CAT12's orthogonality check).

    For each contrast and each design column it weights, the Pearson correlation of that
    column with every TIV column (a column named ``TIV``, ``tiv``, ``vol_TIV``... or containing
    ``intracranial``) that the contrast does not weight. With ``|r| > threshold`` the TIV
    covariate removes much of the effect of interest (the CAT12 manual recommends global
    scaling by TIV instead of a covariate in that case), so a warning is issued.

    Returns
    -------
    list of str
        The warning messages issued (empty when none).
    """
    tiv = [j for j, c in enumerate(design.columns) if _is_tiv(c)]
    messages: list[str] = []
    if not tiv:
        return messages
    for con in contrasts:
        weighted = np.flatnonzero(np.any(np.asarray(con.matrix) != 0, axis=0))
        for j in weighted:
            for t in tiv:
                if t in weighted or np.std(design.X[:, j]) == 0 or np.std(design.X[:, t]) == 0:
                    continue
                r = float(np.corrcoef(design.X[:, j], design.X[:, t])[0, 1])
                if abs(r) > threshold:
                    msg = (f"contrast {con.name!r}: column {design.columns[j]!r} correlates with "
                           f"{design.columns[t]!r} (r = {r:.2f}, |r| > {threshold}); TIV as a covariate "
                           "will absorb part of this effect (CAT12 orthogonality check)")
                    warnings.warn(msg, stacklevel=2)
                    messages.append(msg)
    return messages
