"""The study report's cohort table: numeric columns stay numeric when BIDS writes n/a."""

from __future__ import annotations

import pandas as pd

from vbmkit.report.study_report import _cohort


def test_numeric_column_with_na_is_summarised_as_numbers(tmp_path):
    (tmp_path / "covariates.tsv").write_text(
        "participant_id\tage\tIQ\tgroup\n"
        "sub-01\t20\t100\tdepr\nsub-02\t30\tn/a\tcontrol\nsub-03\t40\t110\tn/a\n")
    _cohort(tmp_path, None)
    summary = pd.read_csv(tmp_path / "report_files" / "cohort_summary.csv").set_index("variable")
    assert summary.loc["IQ", "n"] == 2 and summary.loc["IQ", "mean"] == 105.0
    assert summary.loc["age", "mean"] == 30.0 and summary.loc["age", "max"] == 40.0
    assert pd.isna(summary.loc["group", "mean"])
    assert summary.loc["group", "n"] == 2
    assert "depr: 1" in summary.loc["group", "levels"] and "n/a: 1" in summary.loc["group", "levels"]
