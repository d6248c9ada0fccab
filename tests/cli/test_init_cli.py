"""``vbmkit init``: a YAML that fits a BIDS folder and validates as written."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from vbmkit.cli.main import app
from vbmkit.workflows.study.plan import load_study

runner = CliRunner()


def _bids(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    rows = ["participant_id\tage\tgender\tgroup"]
    for i in range(n):
        anat = root / f"sub-{i + 1:02d}" / "anat"
        anat.mkdir(parents=True)
        nib.save(nib.Nifti1Image(rng.random((7, 8, 9)).astype("f4"), np.eye(4)), anat / f"sub-{i + 1:02d}_T1w.nii.gz")
        rows.append(f"sub-{i + 1:02d}\t{30 + 3 * i}\t{'fm'[i % 2]}\t{['control', 'depr'][i // 3]}")
    rows.append("sub-99\t40\tm\tcontrol")  # a row without an image, as in ds002748
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    return root


def test_init_writes_a_valid_commented_yaml(tmp_path):
    root = _bids(tmp_path / "ds")
    res = runner.invoke(app, ["init", str(root)])
    assert res.exit_code == 0, res.output
    text = (root / "study.yaml").read_text()
    assert "# Found: BIDS dataset: 6 T1w images" in text
    assert "formula: age + C(gender) + C(group) + TIV" in text
    assert 'group: "C(group)[T.depr]"' in text and 'gender: "C(gender)[T.m]"' in text
    plan = load_study(root / "study.yaml")  # validates: files, formula, contrasts, TIV convention
    assert len(plan.t1) == 6 and plan.tiv_from == "preprocess"
    assert plan.out == root / "derivatives" / "vbmkit"


def test_init_elsewhere_rewrites_paths_and_refuses_to_overwrite(tmp_path):
    root = _bids(tmp_path / "ds")
    target = tmp_path / "studies" / "s.yaml"
    target.parent.mkdir()
    assert runner.invoke(app, ["init", str(root), "--output", str(target)]).exit_code == 0
    assert 't1: ["../ds"]' in target.read_text()
    assert len(load_study(target).t1) == 6
    res = runner.invoke(app, ["init", str(root), "--output", str(target)])
    assert res.exit_code == 2 and "it exists (use --force to overwrite)" in res.output
    assert runner.invoke(app, ["init", str(root), "--output", str(target), "--force"]).exit_code == 0


def test_init_on_a_folder_without_images(tmp_path):
    res = runner.invoke(app, ["init", str(tmp_path)])
    assert res.exit_code == 2 and "found none" in res.output
