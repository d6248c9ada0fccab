"""run_glm end to end on a tiny cohort: output contract, orientation, values, bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from vbmkit.config import GlmConfig
from vbmkit.errors import ConfigError, CovariateError, DesignError, GridMismatchError
from vbmkit.workflows.glm import CLUSTER_COLUMNS, run_glm

SHAPE = (7, 8, 9)
# Flipped (LAS) and anisotropic: outputs must come back in this storage orientation.
AFFINE = np.array([[-2.0, 0, 0, 6.0], [0, 1.5, 0, -6.0], [0, 0, 1.0, -4.0], [0, 0, 0, 1.0]])
N = 24


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(7)
    age = rng.uniform(20, 80, N)
    sex = np.tile(["f", "m"], N // 2)
    tiv = rng.normal(1500, 100, N)
    base = 0.3 + 0.5 * rng.random(SHAPE)
    effect = np.zeros(SHAPE)
    effect[1:4, 2:5, 3:6] = -0.004  # stored-index block with an age effect
    for i in range(N):
        data = base + effect * (age[i] - 50) + 0.02 * rng.standard_normal(SHAPE)
        path = root / "out" / f"sub-{i + 1:02d}" / "mri" / f"s6mwp1sub-{i + 1:02d}.nii.gz"
        path.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), str(path))
    table = pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N)], "age": age.round(2),
                          "sex": sex, "TIV": tiv.round(1)})
    table.to_csv(root / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return root


def _settings(**kw) -> GlmConfig:
    base = {"formula": "age + C(sex) + TIV", "contrasts": {"age": "-age", "sex": "C(sex)"}, "subsamples": 8,
            "permutations": 10, "mask_threshold": 0.0, "device": "cpu"}
    return GlmConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def result(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("res") / "glm"
    summary = run_glm([cohort / "out"], cohort / "participants.tsv", id_column="participant_id",
                      settings=_settings(), out=out, progress=False)
    return out, summary


def test_output_contract(result):
    out, summary = result
    for name in ("summary.json", "design.csv", "design.png", "mask.nii.gz"):
        assert (out / name).is_file(), name
    for name in ("t", "p", "q_fdr", "p_fwe", "effect", "std_effect", "t_median", "t_iqr", "stability"):
        assert (out / "age" / f"{name}.nii.gz").is_file(), name
    for name in ("F", "F_median", "F_iqr", "stability", "p_fwe"):
        assert (out / "sex" / f"{name}.nii.gz").is_file(), name
    assert (out / "age" / "glass_brain.png").stat().st_size > 1000
    clusters = pd.read_csv(out / "age" / "clusters.csv")
    assert list(clusters.columns) == CLUSTER_COLUMNS and len(clusters) >= 1
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["n_subjects"] == N and on_disk["n_voxels"] == int(np.prod(SHAPE))
    assert on_disk["design_columns"] == ["Intercept", "age", "C(sex)[T.m]", "TIV"]
    age = on_disk["contrasts"]["age"]
    assert age["type"] == "t" and age["df"] == [1.0, N - 4.0] and age["files"]["stat"] == "age/t.nii.gz"
    assert on_disk["contrasts"]["sex"]["type"] == "F" and on_disk["contrasts"]["sex"]["files"]["median"] == "sex/F_median.nii.gz"
    assert age["n_voxels_q_fdr_below_0.05"] >= 20 and age["n_voxels_p_fwe_below_0.05"] is not None
    design = pd.read_csv(out / "design.csv")
    assert list(design.columns) == ["participant_id", "Intercept", "age", "C(sex)[T.m]", "TIV"]
    assert not list(out.parent.glob(".glm.tmp-*"))  # the temporary folder is gone


def test_orientation_and_values_match_statsmodels(result, cohort):
    out, _ = result
    t_img = nib.load(str(out / "age" / "t.nii.gz"))
    np.testing.assert_allclose(t_img.affine, AFFINE)  # stored orientation kept
    t_map = np.asarray(t_img.dataobj)
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    X = sm.add_constant(np.column_stack([table["age"], table["sex"] == "m", table["TIV"]]).astype(float))
    # read the raw stored arrays (no reorientation) and check voxels by stored index
    raw = np.stack([np.asarray(nib.load(str(cohort / "out" / i / "mri" / f"s6mwp1{i}.nii.gz")).dataobj)
                    for i in table["participant_id"]])
    for ijk in [(2, 3, 4), (0, 0, 0), (6, 7, 8), (5, 1, 2)]:
        ols = sm.OLS(raw[(slice(None), *ijk)].astype(np.float64), X).fit()
        # -age contrast; float32 maps, so a relative tolerance of 1e-4
        np.testing.assert_allclose(t_map[ijk], -ols.tvalues[1], rtol=1e-4, atol=1e-4)
    assert t_map[2, 3, 4] > 5 and abs(t_map[6, 7, 8]) < 5


def test_rerun_is_skipped(result, cohort):
    out, summary = result
    before = (out / "age" / "t.nii.gz").stat().st_mtime_ns
    again = run_glm([cohort / "out"], cohort / "participants.tsv", id_column="participant_id",
                    settings=_settings(), out=out, progress=False)
    assert again["fingerprint"] == summary["fingerprint"]
    assert (out / "age" / "t.nii.gz").stat().st_mtime_ns == before


def test_missing_rows_error_or_drop(cohort, tmp_path):
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    extra = pd.concat([table.iloc[2:], pd.DataFrame({"participant_id": ["sub-99"], "age": [40.0], "sex": ["f"],
                                                     "TIV": [1500.0]})])
    out = tmp_path / "g"
    with pytest.raises(CovariateError, match=r"2 images have no row .*sub-01.*1 rows of .* have no image: \['sub-99'\]"):
        run_glm([cohort / "out"], extra, id_column="participant_id", settings=_settings(subsamples=0,
                permutations=0), out=out, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written
    # a misspelt formula column is reported first, before the unmatched rows and images
    with pytest.raises(CovariateError, match=r"formula 'agee': expected columns \['agee'\]"):
        run_glm([cohort / "out"], extra, id_column="participant_id", settings=_settings(formula="agee",
                contrasts={"age": "agee"}, subsamples=0, permutations=0), out=out, progress=False)
    with pytest.warns(UserWarning, match="dropped"):
        summary = run_glm([cohort / "out"], extra, id_column="participant_id", missing="drop",
                          settings=_settings(subsamples=0, permutations=0), out=out, progress=False)
    assert summary["n_subjects"] == N - 2 and summary["dropped"]["rows_without_image"] == ["sub-99"]
    assert not (out / "age" / "t_median.nii.gz").exists() and not (out / "age" / "p_fwe.nii.gz").exists()


def test_bad_input_leaves_nothing(cohort, tmp_path):
    out = tmp_path / "g"
    args = ([cohort / "out"], cohort / "participants.tsv")
    with pytest.raises(DesignError, match=r"fraction 0.2: each subsample would hold 5 of 24"):
        run_glm(*args, id_column="participant_id", settings=_settings(fraction=0.2), out=out, progress=False)
    with pytest.raises(ConfigError, match="contrast name 'a b'"):
        run_glm(*args, id_column="participant_id", settings=_settings(contrasts={"a b": "age"}), out=out,
                progress=False)
    with pytest.raises(CovariateError, match=r"stratify: expected a column 'site'"):
        run_glm(*args, id_column="participant_id", settings=_settings(stratify="site"), out=out, progress=False)
    with pytest.raises(CovariateError, match=r"expected columns \['bmi'\]"):
        run_glm(*args, id_column="participant_id", settings=_settings(formula="age + bmi"), out=out,
                progress=False)
    other = tmp_path / "s6mwp1sub-99.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((7, 8, 10), np.float32), AFFINE), str(other))
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    table.loc[N] = ["sub-99", 50.0, "f", 1500.0]
    with pytest.raises(GridMismatchError, match=r"s6mwp1sub-01\.nii\.gz has shape (.|\n)*sub-99\.nii\.gz has shape \(7, 8, 10\)"):
        run_glm([cohort / "out", other], table, id_column="participant_id", settings=_settings(), out=out,
                progress=False)
    assert not list(tmp_path.glob("g*")) and not list(tmp_path.glob(".g*"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="busy: expected a new or empty folder.*holds 1 entries vbmkit did not write \\(notes.txt\\)"):
        run_glm(*args, id_column="participant_id", settings=_settings(subsamples=0, permutations=0),
                out=tmp_path / "busy", progress=False)


def test_tiv_warning_in_summary(cohort, tmp_path):
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    table["TIV"] = table["age"] * 10 + np.random.default_rng(1).normal(0, 50, N)
    with pytest.warns(UserWarning, match="orthogonality"):
        summary = run_glm([cohort / "out"], table, id_column="participant_id",
                          settings=_settings(contrasts={"age": "age"}, subsamples=0, permutations=0),
                          out=tmp_path / "g", progress=False)
    assert any("orthogonality" in w for w in summary["warnings"])
