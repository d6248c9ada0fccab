"""The Python API: statsmodels agreement, identical files to the CLI, the example script."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from typer.testing import CliRunner

import vbmkit
from vbmkit.cli.main import app
from vbmkit.errors import CovariateError

REPO = Path(__file__).resolve().parents[2]
N = 30


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    rng = np.random.default_rng(5)
    age = rng.uniform(20, 80, N).round(1)
    sex = np.tile(["f", "m"], N // 2)
    affine = np.diag([-2.0, 2.0, 2.5, 1.0])
    paths = []
    for i in range(N):
        data = 0.5 + 0.003 * (age[i] - 50) * np.linspace(0, 1, 7)[:, None, None] + 0.05 * rng.standard_normal((7, 8, 9))
        p = root / f"s6mwp1sub-{i + 1:02d}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(p))
        paths.append(p)
    table = pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N)], "age": age, "sex": sex})
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root, paths, table


def test_t_map_equals_statsmodels_voxel_by_voxel(cohort):
    _, paths, table = cohort
    res = vbmkit.GLM("age + C(sex)", subsamples=0, device="cpu").fit(paths, table[["age", "sex"]]) \
        .compute_contrast("age")
    t = res.t.get_fdata()
    data = np.stack([nib.load(str(p)).get_fdata() for p in paths])
    checked = 0
    for ijk in [(0, 0, 0), (3, 4, 5), (6, 7, 8), (2, 5, 1), (5, 1, 7)]:
        frame = table.assign(y=data[(slice(None), *ijk)])
        fit = smf.ols("y ~ age + C(sex)", data=frame).fit()
        assert t[ijk] == pytest.approx(fit.tvalues["age"], abs=1e-4)
        checked += 1
    # every voxel at once: the same t from numpy's least squares (float64)
    X = np.column_stack([np.ones(N), table["age"], (table["sex"] == "m").astype(float)])
    Y = data.reshape(N, -1)
    beta, *_ = np.linalg.lstsq(X, Y, rcond=None)
    resid = Y - X @ beta
    sigma2 = (resid ** 2).sum(0) / (N - 3)
    se = np.sqrt(sigma2 * np.linalg.inv(X.T @ X)[1, 1])
    np.testing.assert_allclose(t.reshape(-1), (beta[1] / se), atol=1e-4)
    assert checked == 5


def test_api_files_equal_the_cli_files_bit_for_bit(cohort, tmp_path):
    root, paths, table = cohort
    res = vbmkit.GLM("age + C(sex)", subsamples=10, seed=3, device="cpu").fit(paths, table[["age", "sex"]]) \
        .compute_contrast("age", name="age")
    res.save(tmp_path / "api")
    cli = CliRunner().invoke(app, ["glm", *map(str, paths), "-c", str(root / "participants.tsv"), "-f", "age + C(sex)",
                                   "--contrast", "age=age", "--subsamples", "10", "--seed", "3", "-o",
                                   str(tmp_path / "cli"), "--device", "cpu", "-q"])
    assert cli.exit_code == 0, cli.output
    for name in ("t.nii.gz", "t_median.nii.gz", "p.nii.gz", "q_fdr.nii.gz", "effect.nii.gz", "stability.nii.gz"):
        a = nib.load(str(tmp_path / "api" / "age" / name)).get_fdata()
        b = nib.load(str(tmp_path / "cli" / "age" / name)).get_fdata()
        assert np.array_equal(a, b), name
    assert res.median_t is not None and res.p_fwe is None
    assert (tmp_path / "api" / "age" / "clusters.csv").read_text() == (tmp_path / "cli" / "age" / "clusters.csv").read_text()


def test_one_4d_image_and_errors(cohort):
    _, paths, table = cohort
    stacked = np.stack([nib.load(str(p)).get_fdata() for p in paths], axis=-1).astype(np.float32)
    img = nib.Nifti1Image(stacked, nib.load(str(paths[0])).affine)
    res = vbmkit.GLM("age", subsamples=0, device="cpu").fit(img, table[["age"]]).compute_contrast("age")
    ref = vbmkit.GLM("age", subsamples=0, device="cpu").fit(paths, table[["age"]]).compute_contrast("age")
    np.testing.assert_array_equal(res.t.get_fdata(), ref.t.get_fdata())
    with pytest.raises(CovariateError, match=r"expected a pandas DataFrame with one row per image \(30\); got \(29, 1\)"):
        vbmkit.GLM("age").fit(paths, table[["age"]].iloc[:29])


def test_example_script_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["api_example.py", str(tmp_path / "ex")])
    runpy.run_path(str(REPO / "examples" / "api_example.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "max t" in out and (tmp_path / "ex" / "age_decline" / "age_decline" / "t.nii.gz").is_file()
