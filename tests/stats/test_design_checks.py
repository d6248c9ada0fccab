"""Design-matrix and contrast validation (vbmkit.stats.design)."""

from __future__ import annotations

import numpy as np
import pytest

from vbmkit.errors import DesignError
from vbmkit.stats.design import (
    Contrast,
    check_contrast,
    check_design,
    intercept_index,
    ones_in_span,
    standardise_design,
)

COLUMNS = ["Intercept", "age", "sex", "TIV"]


def _design(n: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([np.ones(n), rng.normal(50, 10, n), rng.integers(0, 2, n), rng.normal(1500, 100, n)])


def test_valid_design_passes():
    check_design(_design(), COLUMNS)


def test_too_few_subjects():
    with pytest.raises(DesignError, match=r"fewer subjects than columns \+ 2 \(got N=5 subjects, P=4"):
        check_design(_design(5), COLUMNS)


def test_rank_deficiency_names_the_columns():
    X = _design()
    X = np.column_stack([X, X[:, 1] * 2 + X[:, 3]])
    with pytest.raises(DesignError, match=r"rank deficient \(rank 4 < 5 columns\).*age.*TIV.*age2TIV"):
        check_design(X, [*COLUMNS, "age2TIV"])


def test_nan_is_named():
    X = _design()
    X[3, 2] = np.nan
    with pytest.raises(DesignError, match=r"column 'sex' holds NaN/Inf \(rows \[3\]\)"):
        check_design(X, COLUMNS)


def test_column_count_mismatch():
    with pytest.raises(DesignError, match="4 columns but 3 column names"):
        check_design(_design(), COLUMNS[:3])


def test_constant_covariate_warns():
    X = _design()
    X[:, 2] = 1.0  # constant 'sex' next to the intercept: warned, then rank deficient
    with pytest.warns(UserWarning, match="column 'sex' is constant"), pytest.raises(DesignError, match="rank deficient"):
        check_design(X, COLUMNS)


def test_constant_covariate_without_intercept_only_warns():
    X = _design()[:, 1:]
    X[:, 1] = 3.0
    with pytest.warns(UserWarning, match="constant"):
        check_design(X, ["age", "site", "TIV"])


def test_contrast_width_and_rows():
    X = _design()
    with pytest.raises(DesignError, match=r"contrast 'c': has 3 columns; expected 4"):
        check_contrast(Contrast("c", np.array([0, 1, 0.0])), X, COLUMNS)
    with pytest.raises(DesignError, match="a row is all zeros"):
        check_contrast(Contrast("c", np.zeros(4)), X, COLUMNS)
    with pytest.raises(DesignError, match="rows are linearly dependent"):
        check_contrast(Contrast("c", np.array([[0, 1, 0, 0], [0, 2, 0, 0.0]]), "F"), X, COLUMNS)
    with pytest.raises(DesignError, match="a t-contrast has one row; got 2 rows"):
        Contrast("c", np.eye(4)[:2])
    with pytest.raises(DesignError, match="kind must be 't' or 'F'"):
        Contrast("c", np.ones(4), "z")


def test_contrast_outside_row_space():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 2, 12).astype(float)
    X = np.column_stack([np.ones(12), g, 1 - g])  # rank 2: g + (1 - g) = intercept
    cols = ["Intercept", "A", "B"]
    check_contrast(Contrast("AvsB", np.array([0, 1, -1.0])), X, cols)  # estimable
    with pytest.raises(DesignError, match="contrast 'A' is not estimable"):
        check_contrast(Contrast("A", np.array([0, 1, 0.0])), X, cols)


def test_standardise_keeps_fit_and_maps_contrasts():
    X = _design()
    Xs, T = standardise_design(X, COLUMNS)
    np.testing.assert_allclose(Xs, X @ T)
    np.testing.assert_allclose(Xs[:, 1:].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Xs[:, 1:].std(0), 1, rtol=1e-12)
    y = np.random.default_rng(2).normal(size=20)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    beta_s = np.linalg.lstsq(Xs, y, rcond=None)[0]
    c = np.array([0, 1, 0, -0.5])
    np.testing.assert_allclose(c @ beta, (c @ T) @ beta_s, rtol=1e-9)  # effects stay in original units
    assert intercept_index(X, COLUMNS) == 0 and ones_in_span(X) and not ones_in_span(X[:, 1:2])
