"""Formula -> design matrix and contrast parsing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vbmkit.errors import ConfigError, CovariateError, DesignError
from vbmkit.formula.design import (
    build_design,
    check_contrast_name,
    formula_variables,
    parse_contrast,
    parse_contrasts,
    tiv_correlations,
)


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 24
    return pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(n)],
        "age": rng.uniform(20, 80, n).round(1),
        "sex": rng.choice(["f", "m"], n),
        "site": np.tile(["a", "b", "c"], n // 3),
        "TIV": rng.normal(1500, 100, n),
        "group": np.repeat(["ctrl", "depr"], n // 2),
    })


def test_columns_terms_and_standardising(table):
    d = build_design(table, "age + C(sex) + C(site) + TIV")
    assert d.columns == ["Intercept", "age", "C(sex)[T.m]", "C(site)[T.b]", "C(site)[T.c]", "TIV"]
    assert d.factor_columns["C(site)"] == [3, 4] and d.factor_columns["age"] == [1]
    np.testing.assert_allclose(d.X[:, 1].mean(), 0, atol=1e-12)  # centred
    np.testing.assert_allclose(d.X[:, 1].std(ddof=1), 1, rtol=1e-12)  # scaled (SD, ddof 1)
    mean, sd = d.scaling["age"]
    np.testing.assert_allclose(d.X[:, 1] * sd + mean, table["age"], rtol=1e-12)
    assert set(np.unique(d.X[:, 2])) == {0.0, 1.0} and "sex" not in d.scaling
    raw = build_design(table, "age + C(sex)", standardize=False)
    np.testing.assert_array_equal(raw.X[:, 1], table["age"])


def test_contrast_forms(table):
    d = build_design(table, "age + C(sex) + C(site) + TIV")
    assert parse_contrast("age", "age", d).matrix.tolist() == [[0, 1, 0, 0, 0, 0]]
    neg = parse_contrast("neg", "-age", d)
    assert neg.kind == "t" and neg.matrix.tolist() == [[0, -1, 0, 0, 0, 0]]
    assert parse_contrast("m", "C(sex)[T.m]", d).matrix.tolist() == [[0, 0, 1, 0, 0, 0]]
    assert parse_contrast("bc", "C(site)[T.b] - C(site)[T.c]", d).matrix.tolist() == [[0, 0, 0, 1, -1, 0]]
    assert parse_contrast("v", "0 1 0 0 0 0", d).matrix.tolist() == [[0, 1, 0, 0, 0, 0]]
    assert parse_contrast("v2", [0, 0, 0, 0, 0, 1], d).kind == "t"
    site = parse_contrast("site", "C(site)", d)
    assert site.kind == "F" and site.matrix.tolist() == [[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]
    both = parse_contrast("both", "F: age, C(site)", d)
    assert both.kind == "F" and both.matrix.shape == (3, 6)
    m = parse_contrast("mat", "0 1 0 0 0 0; 0 0 0 0 0 1", d)
    assert m.kind == "F" and m.matrix.shape == (2, 6)
    assert parse_contrast("mat2", [[0, 1, 0, 0, 0, 0]], d).kind == "F"  # a matrix is F even with one row
    assert parse_contrast("lit", "[[0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]]", d).matrix.shape == (2, 6)
    assert [c.name for c in parse_contrasts({"a": "age", "b": "C(site)"}, d)] == ["a", "b"]


def test_text_column_without_C_is_a_factor(table):
    d = build_design(table, "age + group")
    assert d.columns[-1] == "group[T.depr]"
    assert parse_contrast("grp", "group", d).kind == "F"
    assert parse_contrast("dep", "group[T.depr]", d).kind == "t"


def test_contrast_errors(table):
    d = build_design(table, "age + C(sex)")
    with pytest.raises(ConfigError, match=r"contrast 'x': expected an expression of the design columns"):
        parse_contrast("x", "agee", d)
    with pytest.raises(ConfigError, match=r"contrast 'v': expected 3 weights"):
        parse_contrast("v", "0 1", d)
    with pytest.raises(DesignError, match="all zeros"):
        parse_contrast("z", "0 0 0", d)
    with pytest.raises(DesignError, match="linearly dependent"):
        parse_contrast("dup", "F: age, 2*age", d)
    with pytest.raises(ConfigError, match="tested against 0"):
        parse_contrast("eq", "age = 1", d)
    with pytest.raises(ConfigError, match="contrast name 'a/b'"):
        parse_contrast("a/b", "age", d)
    with pytest.raises(ConfigError, match="distinct folder names"):
        parse_contrasts({"Age": "age", "age": "-age"}, d)
    with pytest.raises(ConfigError, match="at least one"):
        parse_contrasts({}, d)


@pytest.mark.parametrize("name", ["..", "", "a b", "con", "x" * 101, "-age"])
def test_invalid_folder_names(name):
    with pytest.raises(ConfigError, match="expected a folder name"):
        check_contrast_name(name)


def test_formula_errors(table):
    with pytest.raises(CovariateError, match=r"expected columns \['bmi'\] in"):
        build_design(table, "age + bmi")
    with pytest.raises(ConfigError, match="only the right-hand side"):
        formula_variables("y ~ age")
    bad = table.assign(age=table["age"].astype(str))
    bad.loc[3, "age"] = "unknown"
    with pytest.raises(CovariateError, match=r"numbers in column 'age'; found 'unknown'"):
        build_design(bad, "age + C(sex)")
    holes = table.copy()
    holes.loc[[2, 5], "age"] = np.nan
    with pytest.raises(CovariateError, match=r"2 rows have missing values in formula columns \['age'\]: \['sub-02', 'sub-05'\]"):
        build_design(holes, "age + C(sex)", id_column="participant_id")
    with pytest.warns(UserWarning, match="dropped"):
        d = build_design(holes, "age + C(sex)", id_column="participant_id", missing="drop")
    assert d.X.shape[0] == len(table) - 2 and "sub-02" not in set(d.table["participant_id"])


def test_rank_deficient_constant_and_too_few(table):
    t = table.assign(age_months=table["age"] * 12)
    with pytest.raises(DesignError, match=r"rank deficient.*age.*age_months"):
        build_design(t, "age + age_months")
    with pytest.warns(UserWarning, match="constant"), pytest.raises(DesignError, match="rank deficient"):
        build_design(table.assign(k=5.0), "age + k")
    with pytest.warns(UserWarning, match="covariate 'g' is constant"):
        build_design(table.assign(g="x"), "age + C(g)")
    with pytest.raises(DesignError, match="fewer subjects than columns"):
        build_design(table.head(5), "age + C(site) + TIV")


def test_tiv_orthogonality_warning(table):
    t = table.assign(TIV=table["age"] * 3 + np.random.default_rng(0).normal(0, 60, len(table)))
    d = build_design(t, "age + C(sex) + TIV")
    with pytest.warns(UserWarning, match=r"column 'age' correlates with 'TIV' \(r = 0\.73, \|r\| > 0\.5\)"):
        msgs = tiv_correlations(d, parse_contrasts({"age": "age"}, d))
    assert len(msgs) == 1
    d2 = build_design(table, "age + C(sex) + TIV")
    assert tiv_correlations(d2, parse_contrasts({"age": "age"}, d2)) == []
