"""``vbmkit glm`` through typer's CliRunner: success, --study, clean exits on bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vbmkit.cli.main import app

runner = CliRunner()
N = 16


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_cohort")
    rng = np.random.default_rng(11)
    age = rng.uniform(20, 80, N)
    affine = np.diag([-2.0, 2.0, 2.5, 1.0])
    for i in range(N):
        data = 0.5 + 0.005 * (age[i] - 50) * np.ones((7, 8, 9)) + 0.05 * rng.standard_normal((7, 8, 9))
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(root / f"s6mwp1sub-{i + 1:02d}_T1w.nii.gz"))
    pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N)], "age": age.round(1),
                  "sex": np.tile(["f", "m"], N // 2)}).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def _args(cohort, out, *extra):
    return ["glm", str(cohort / "s6mwp1sub-*.nii.gz"), "--covariates", str(cohort / "participants.tsv"),
            "--formula", "age + C(sex)", "--contrast", "age=age", "--subsamples", "5", "--out", str(out),
            "--device", "cpu", "-q", *extra]


def test_glm_runs_and_prints_summary(cohort, tmp_path):
    res = runner.invoke(app, _args(cohort, tmp_path / "g", "--contrast", "sex=C(sex)", "--permutations", "5"))
    assert res.exit_code == 0, res.output
    assert "16 subjects, 504 voxels" in res.output and "age: max t =" in res.output
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert set(summary["contrasts"]) == {"age", "sex"} and summary["settings"]["subsamples"] == 5
    assert (tmp_path / "g" / "sex" / "F_median.nii.gz").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["--contrast", "oops"], "expected NAME=EXPR"),
    (["--contrast", "bad/name=age"], "contrast name 'bad/name'"),
    (["--contrast", "x=agee"], "contrast 'x': expected an expression"),
    (["--missing", "maybe"], "Invalid value for '--missing'"),
    (["--fraction", "0.25"], "fraction 0.25: each subsample would hold 4 of 16"),
    (["--id-column", "subject"], "expected an ID column 'subject'"),
    (["--permutations", "1"], "at least 2 (the identity counts as one)"),
])
def test_bad_options_exit_2(cohort, tmp_path, extra, message):
    res = runner.invoke(app, _args(cohort, tmp_path / "g", *extra))
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "g").exists()


def test_missing_required_options(cohort, tmp_path):
    res = runner.invoke(app, ["glm", str(cohort), "--out", str(tmp_path / "g")])
    assert res.exit_code == 2 and "expected --covariates" in res.output
    res = runner.invoke(app, ["glm", "--out", str(tmp_path / "g")])
    assert res.exit_code == 2 and "expected IMAGES" in res.output


def test_rows_without_images_listed(cohort, tmp_path):
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    table.loc[N] = ["sub-77", 33.0, "m"]
    table.to_csv(tmp_path / "cov.csv", index=False)
    args = _args(cohort, tmp_path / "g")
    args[args.index("--covariates") + 1] = str(tmp_path / "cov.csv")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "have no image: ['sub-77']" in res.output
    res = runner.invoke(app, [*args, "--missing", "drop"])
    assert res.exit_code == 0 and "16 subjects" in res.output
    assert "Warning: 1 rows of" in res.output and "dropped (--missing drop)" in res.output


def test_study_yaml(cohort, tmp_path):
    (tmp_path / "study.yaml").write_text(
        "schema_version: 1\nname: toy\ndevice: cpu\n"
        f"inputs:\n  maps: ['{cohort}']\n  covariates: {cohort / 'participants.tsv'}\n"
        "glm:\n  maps: s6mwp1\n  formula: age + C(sex)\n  contrasts:\n    age: age\n    neg: [0, -1, 0]\n"
        "  subsamples: 4\n")
    res = runner.invoke(app, ["glm", "--study", str(tmp_path / "study.yaml"), "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "toy_out" / "glm" / "summary.json").read_text())
    assert summary["contrasts"]["neg"]["max_statistic"] == pytest.approx(-summary["contrasts"]["age"]["min_statistic"], rel=1e-5)
    # options beside --study override the YAML
    res = runner.invoke(app, ["glm", "--study", str(tmp_path / "study.yaml"), "--subsamples", "0",
                              "--out", str(tmp_path / "g2"), "-q"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "g2" / "age" / "t_median.nii.gz").exists() and (tmp_path / "g2" / "neg" / "t.nii.gz").is_file()
    (tmp_path / "bad.yaml").write_text("schema_version: 1\ninputs:\n  maps: ['x']\nglm:\n  formula: age\n")
    res = runner.invoke(app, ["glm", "--study", str(tmp_path / "bad.yaml")])
    assert res.exit_code == 2 and "contrasts" in res.output


def test_glm_tfce_and_cluster_fwe(cohort, tmp_path):
    out = tmp_path / "g"
    res = runner.invoke(app, _args(cohort, out, "--subsamples", "0", "--permutations", "10", "--tfce",
                                   "--tfce-connectivity", "26", "--tail", "both", "--cluster-p", "0.01",
                                   "--blocks", "sex"))
    assert res.exit_code == 0, res.output
    for name in ("tfce.nii.gz", "p_fwe_tfce.nii.gz", "log_p_fwe_tfce.nii.gz", "p_fwe.nii.gz"):
        assert (out / "age" / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    inference = summary["contrasts"]["age"]["inference"]
    assert inference["tail"] == "both" and inference["tfce"]["connectivity"] == 26
    assert inference["cluster_p"] == 0.01 and inference["blocks"] == "sex"
    table = pd.read_csv(out / "age" / "clusters.csv")
    assert {"p_fwe_cluster", "p_fwe_mass"} <= set(table.columns)


def test_glm_tfce_without_permutations_is_one_clean_error(cohort, tmp_path):
    res = runner.invoke(app, _args(cohort, tmp_path / "g", "--tfce"))
    assert res.exit_code == 2
    assert "tfce needs permutations >= 2" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "g").exists()


def test_glm_unknown_blocks_column_is_one_clean_error(cohort, tmp_path):
    res = runner.invoke(app, _args(cohort, tmp_path / "g", "--permutations", "5", "--blocks", "scanner"))
    assert res.exit_code == 2
    assert "blocks: expected a column 'scanner' in the covariate table" in res.output
    assert "Traceback" not in res.output


def test_glm_help_lists_inference_choices():
    res = runner.invoke(app, ["glm", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for text in ("--tfce", "--tfce-e", "--tfce-h", "--cluster-p", "--blocks", "positive", "negative", "both"):
        assert text in res.output
    assert "6" in res.output and "18" in res.output and "26" in res.output
