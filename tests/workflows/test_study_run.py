"""A whole study on tiny maps: stages, outputs, provenance, resume, QC exclusion."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from vbmkit.workflows.study import run_study

YAML = """\
name: tiny
inputs:
  maps: [maps]
  covariates: participants.csv
qc:
  exclude_flagged: {exclude}
glm:
  maps: mwp1
  formula: age + C(sex)
  contrasts:
    age: age
  subsamples: 5
  fraction: 0.8
  mask_threshold: 0.05
report:
  title: tiny study
"""


def _study(root: Path, *, exclude: bool) -> Path:
    """12 smooth maps 9 x 10 x 11 sharing an anatomy (plus noise); sub-05 is unrelated noise."""
    rng = np.random.default_rng(1)
    (root / "maps").mkdir(parents=True)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in (9, 10, 11)], indexing="ij")
    anatomy = np.exp(-(x**2 + y**2 + z**2) * 2)
    rows = ["participant_id,age,sex"]
    aff = np.diag([-3.0, 3.0, 3.5, 1.0])  # flipped, anisotropic
    for i in range(12):
        data = anatomy + 0.05 * rng.standard_normal(anatomy.shape)
        if i == 4:
            data = rng.random(anatomy.shape)
        nib.save(nib.Nifti1Image(data.astype("f4"), aff), root / "maps" / f"mwp1sub-{i + 1:02d}.nii.gz")
        rows.append(f"sub-{i + 1:02d},{20 + 4 * i},{'mf'[i % 2]}")
    (root / "participants.csv").write_text("\n".join(rows) + "\n")
    path = root / "study.yaml"
    path.write_text(YAML.format(exclude=str(exclude).lower()))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("study")
    path = _study(root, exclude=True)
    return root, run_study(path)


def test_stages_write_their_folders_and_the_report(finished):
    root, prov = finished
    out = root / "tiny_out"
    assert prov["stages"]["qc"]["status"].startswith("ran")
    assert prov["stages"]["preprocess"]["status"].startswith("not configured")
    for rel in ("qc/qc.csv", "qc/qc.json", "qc/homogeneity.png", "glm/summary.json", "glm/age/t.nii.gz",
                "covariates.tsv", "report.html", "provenance.json", "report_files/cohort_summary.csv"):
        assert (out / rel).is_file(), rel
    html = (out / "report.html").read_text()
    for heading in ("Cohort", "Quality control", "Design", "Contrast: age", "Provenance"):
        assert heading in html
    assert "src=\"data:image/png;base64," in html  # figures embedded: self-contained


def test_provenance_records_yaml_hash_versions_and_checksums(finished):
    root, prov = finished
    text = (root / "study.yaml").read_text()
    saved = json.loads((root / "tiny_out" / "provenance.json").read_text())
    assert saved["yaml_text"] == text
    assert saved["yaml_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert saved["packages"]["torch"] and saved["packages"]["vbmkit"]
    assert len(saved["resources"]["Template_4_GS"]["sha256"]) == 64
    assert set(saved["stages"]) >= {"preprocess", "qc", "glm", "roi", "compare", "report"}


def test_qc_flags_the_unrelated_map_and_excludes_it(finished):
    root, _ = finished
    qc = pd.read_csv(root / "tiny_out" / "qc" / "qc.csv")
    assert qc.loc[qc["flagged"], "name"].tolist() == ["sub-05"]
    glm = json.loads((root / "tiny_out" / "glm" / "summary.json").read_text())
    assert glm["n_subjects"] == 11 and "sub-05" not in glm["subjects"]


def test_rerun_skips_finished_stages(finished):
    root, _ = finished
    again = run_study(root / "study.yaml")
    assert again["stages"]["qc"]["status"].startswith("up to date")
    assert again["stages"]["glm"]["status"].startswith("up to date")


def test_changed_settings_redo_the_stage(tmp_path):
    path = _study(tmp_path, exclude=False)
    run_study(path)
    path.write_text(path.read_text().replace("sd_threshold", "x").replace("exclude_flagged: false",
                                                                          "exclude_flagged: false\n  sd_threshold: 3"))
    prov = run_study(path)
    assert prov["stages"]["qc"]["status"].startswith("ran")
    glm = json.loads((tmp_path / "tiny_out" / "glm" / "summary.json").read_text())
    assert glm["n_subjects"] == 12  # not excluded


def test_compare_section_calls_the_comparison_and_reports_it(tmp_path, monkeypatch):
    """The compare stage hands the study's GLM settings and folder to run_compare; the report shows its metrics."""
    path = _study(tmp_path, exclude=False)
    (tmp_path / "cat12").mkdir()
    path.write_text(path.read_text() + "compare:\n  cat12: cat12\n  ours: maps\n")
    seen = {}

    def fake_compare(ours, *, out, **kwargs):
        seen.update(kwargs, ours=ours)
        Path(out).mkdir(parents=True)
        metrics = {"contrasts": {"age": {"r_median_t": 0.91}}, "subjects": {}}
        (Path(out) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr("vbmkit.workflows.study.stages.run_compare", fake_compare)
    prov = run_study(path)
    assert seen["ours"] == tmp_path / "maps" and seen["cat12"] == tmp_path / "cat12"
    assert seen["glm"].formula == "age + C(sex)" and dict(seen["glm"].contrasts) == {"age": "age"}
    assert seen["glm_ours"] == tmp_path / "tiny_out" / "glm"  # the study's GLM is reused, not refitted
    assert prov["stages"]["compare"]["status"] == "ran"
    assert "Comparison" in (tmp_path / "tiny_out" / "report.html").read_text()
    assert run_study(path)["stages"]["compare"]["status"] == "up to date"
