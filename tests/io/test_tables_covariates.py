"""Covariate tables: CSV/TSV, BIDS n/a, ID checks, numeric checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vbmkit.errors import CovariateError
from vbmkit.io.tables import check_covariates, check_numeric, read_covariates


def test_bids_tsv_na_and_text_ids(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_text("participant_id\tage\tsex\nsub-01\t30\tm\nsub-02\tn/a\tf\n007\t41.5\tn/a\n")
    table = read_covariates(path, id_column="participant_id")
    assert list(table["participant_id"]) == ["sub-01", "sub-02", "007"]  # 007 stays text
    assert np.isnan(table.loc[1, "age"]) and table["age"].dtype == float
    assert table["sex"].isna().tolist() == [False, False, True]


def test_csv_and_sniffed_separator(tmp_path):
    (tmp_path / "c.csv").write_text("id,age\na,1\nb,2\n")
    (tmp_path / "c.txt").write_text("id\tage\na\t1\nb\t2\n")
    for name in ("c.csv", "c.txt"):
        assert list(read_covariates(tmp_path / name, id_column="id")["age"]) == [1, 2]


def test_missing_file_and_column(tmp_path):
    with pytest.raises(CovariateError, match="does not exist"):
        read_covariates(tmp_path / "nope.csv", id_column="id")
    (tmp_path / "c.csv").write_text("subject,age\na,1\n")
    with pytest.raises(CovariateError, match=r"expected an ID column 'id'.*'subject'"):
        read_covariates(tmp_path / "c.csv", id_column="id")


def test_duplicate_and_empty_ids(tmp_path):
    (tmp_path / "d.csv").write_text("id,age\na,1\nb,2\na,3\n")
    with pytest.raises(CovariateError, match=r"unique IDs.*\['a'\]"):
        read_covariates(tmp_path / "d.csv", id_column="id")
    (tmp_path / "e.csv").write_text("id,age\na,1\n,2\n")
    with pytest.raises(CovariateError, match=r"lines \[3\] have none"):
        read_covariates(tmp_path / "e.csv", id_column="id")


def test_check_numeric_names_column_and_value():
    table = pd.DataFrame({"id": ["a", "b", "c"], "age": ["31", "4O", "22"], "grp": ["x", "y", "x"]})
    with pytest.raises(CovariateError, match=r"numbers in column 'age'; found '4O'"):
        check_numeric(table, ["age"], source="t.csv")
    check_numeric(pd.DataFrame({"age": [1.0, np.nan]}), ["age"])  # missing values are not text


def test_check_covariates_strips_ids():
    out = check_covariates(pd.DataFrame({"id": [" a", "b "], "x": [1, 2]}), id_column="id")
    assert list(out["id"]) == ["a", "b"]


@pytest.mark.realdata
def test_ds002748_participants(shared_data):
    table = read_covariates(shared_data / "ds002748" / "participants.tsv", id_column="participant_id")
    assert len(table) == 72 and table["participant_id"].is_unique
    assert table["age"].dtype.kind in "if" and set(table["group"].dropna()) >= {"depr"}
    assert table["MADRS"].isna().any()  # BIDS n/a cells are missing values
