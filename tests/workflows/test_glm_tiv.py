"""``vbmkit glm`` takes TIV from the ``volumes.csv`` beside the maps when the covariates lack it."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from vbmkit.config import GlmConfig
from vbmkit.errors import CovariateError
from vbmkit.workflows.glm import run_glm
from vbmkit.workflows.glm.run import _with_tiv
from vbmkit.workflows.subjects import find_volume_tables, merge_tiv

from .test_glm_workflow import cohort  # noqa: F401  (the module-scoped tiny cohort fixture)


def _split_tiv(cohort, tmp_path):  # noqa: F811
    """The cohort's covariates without TIV, and its TIV as a vbmkit volumes.csv beside the maps."""
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    volumes = pd.DataFrame({"name": table["participant_id"], "gm_ml": 600.0, "wm_ml": 500.0,
                            "csf_ml": table["TIV"] - 1100.0, "tiv_ml": table["TIV"]})
    return table.drop(columns=["TIV"]), volumes


def test_merge_tiv_matches_names_to_ids(tmp_path):
    table = pd.DataFrame({"id": ["sub-01", "sub-02", "sub-03"], "age": [30, 40, 50]})
    (tmp_path / "volumes.csv").write_text("name,tiv_ml\nsub-02_T1w,1510.5\nsub-01_T1w,1402.0\n")
    merged, n = merge_tiv(table, [tmp_path / "volumes.csv"], id_column="id")
    assert n == 2
    assert merged["TIV"].iloc[:2].tolist() == [1402.0, 1510.5]
    assert np.isnan(merged["TIV"].iloc[2])
    assert "TIV" not in table.columns  # the caller's table is left as it was


def test_merge_tiv_names_a_table_without_tiv_ml(tmp_path):
    (tmp_path / "volumes.csv").write_text("name,gm_ml\nsub-01,600\n")
    with pytest.raises(CovariateError, match=r"volumes\.csv.*tiv_ml"):
        merge_tiv(pd.DataFrame({"id": ["sub-01"]}), [tmp_path / "volumes.csv"], id_column="id")


def test_find_volume_tables_walks_up_from_maps(tmp_path):
    mri = tmp_path / "pre" / "sub-01" / "mri"
    mri.mkdir(parents=True)
    (tmp_path / "pre" / "volumes.csv").write_text("name,tiv_ml\nsub-01,1500\n")
    found = find_volume_tables([mri / "s6mwp1sub-01.nii", tmp_path / "pre"])
    assert found == [tmp_path / "pre" / "volumes.csv"]


def test_glm_merges_tiv_from_volumes_csv_and_says_so(cohort, tmp_path):  # noqa: F811
    no_tiv, volumes = _split_tiv(cohort, tmp_path)
    volumes.to_csv(tmp_path / "volumes.csv", index=False)
    cov = tmp_path / "cov.csv"
    no_tiv.to_csv(cov, index=False)
    pre = tmp_path / "pre"  # laid out as a preprocessing folder: maps in sub-XX/mri/, volumes.csv on top
    shutil.copytree(cohort / "out", pre)
    (tmp_path / "volumes.csv").rename(pre / "volumes.csv")
    settings = GlmConfig(formula="age + C(sex) + TIV", contrasts={"age": "-age"}, subsamples=0, permutations=0,
                         mask_threshold=0.0, device="cpu")
    with pytest.warns(UserWarning, match=r"TIV: taken from column tiv_ml of .*volumes\.csv for 24 of 24"):
        merged = run_glm([pre], cov, id_column="participant_id", settings=settings, out=tmp_path / "a",
                         progress=False)
    direct = run_glm([cohort / "out"], cohort / "participants.tsv", id_column="participant_id", settings=settings,
                     out=tmp_path / "b", progress=False)
    a = nib.load(tmp_path / "a" / "age" / "t.nii.gz").get_fdata()
    b = nib.load(tmp_path / "b" / "age" / "t.nii.gz").get_fdata()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # the same design as with a TIV column
    assert merged["n_subjects"] == direct["n_subjects"] == 24


def test_formula_tiv_without_any_source_names_the_column(cohort, tmp_path):  # noqa: F811
    no_tiv, _ = _split_tiv(cohort, tmp_path)
    table = _with_tiv(no_tiv, "age + TIV", [cohort / "out" / "sub-01" / "mri" / "s6mwp1sub-01.nii.gz"],
                      id_column="participant_id")
    assert "TIV" not in table.columns  # nothing to merge: the formula check then names TIV
    settings = GlmConfig(formula="age + TIV", contrasts={"age": "age"}, subsamples=0, permutations=0,
                         mask_threshold=0.0, device="cpu")
    cov = tmp_path / "cov.csv"
    no_tiv.to_csv(cov, index=False)
    with pytest.raises(CovariateError, match="TIV"):
        run_glm([cohort / "out"], cov, id_column="participant_id", settings=settings, out=tmp_path / "c",
                progress=False)
