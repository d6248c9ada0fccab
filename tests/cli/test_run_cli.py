"""``vbmkit run``: --check validates only; errors are one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from vbmkit.cli.main import app

runner = CliRunner()


def _folder(root: Path) -> Path:
    (root / "maps").mkdir()
    rng = np.random.default_rng(0)
    rows = ["participant_id,age"]
    for i in range(6):
        nib.save(nib.Nifti1Image(rng.random((7, 8, 9)).astype("f4"), np.eye(4)), root / "maps" / f"s6mwp1s{i}.nii")
        rows.append(f"s{i},{30 + i}")
    (root / "cov.csv").write_text("\n".join(rows) + "\n")
    path = root / "study.yaml"
    path.write_text("inputs:\n  maps: [maps]\n  covariates: cov.csv\nglm:\n  formula: age\n"
                    "  contrasts:\n    age: age\n  subsamples: 0\n")
    return path


def test_check_validates_without_running(tmp_path):
    path = _folder(tmp_path)
    res = runner.invoke(app, ["run", "--check", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "study.yaml: valid; stages: qc, glm, report" in res.output
    assert not (tmp_path / "o").exists()


def test_bad_yaml_exits_2_with_one_line(tmp_path):
    path = _folder(tmp_path)
    path.write_text(path.read_text().replace("subsamples: 0", "subsamples: 0\n  fraction: 2"))
    res = runner.invoke(app, ["run", str(path)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == ["Error: study.yaml:9: glm.fraction: Input should be less than or equal to 1; got 2"]
    assert not (tmp_path / "study_out").exists()


def test_missing_yaml(tmp_path):
    res = runner.invoke(app, ["run", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "expected a study YAML file; it does not exist" in res.output


def test_device_option_overrides_the_yaml(tmp_path):
    from vbmkit.workflows.study.plan import load_study

    path = _folder(tmp_path)
    path.write_text(path.read_text() + "device: cuda\n")
    plan = load_study(path, device="cpu")  # no CUDA needed: the command line wins
    assert plan.device == "cpu" and plan.config.device == "cpu" and plan.config.glm.device == "cpu"
    res = runner.invoke(app, ["run", "--check", str(path), "--device", "cpu", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--check", str(path), "--device", "gpu"])
    assert res.exit_code == 2 and "'gpu' is not one of 'auto', 'cpu', 'cuda'" in res.output
