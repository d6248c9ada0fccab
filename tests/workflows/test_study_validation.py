"""Bad study YAMLs: each gives a one-line error naming the key (and line), and no output folder."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from vbmkit.errors import ConfigError
from vbmkit.workflows.study import run_study
from vbmkit.workflows.study.plan import load_study

GOOD = """\
name: t
inputs:
  maps: [maps]
  covariates: participants.csv
glm:
  formula: age + C(sex) + C(group)
  contrasts:
    age: age
    depr: C(group)[T.depr]
  subsamples: 10
  fraction: 0.8
"""


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A folder with 8 tiny maps (7 x 8 x 9), a covariate CSV and a valid study.yaml."""
    rng = np.random.default_rng(0)
    (tmp_path / "maps").mkdir()
    rows = ["participant_id,age,sex,group"]
    for i in range(8):
        img = nib.Nifti1Image(rng.random((7, 8, 9)).astype("f4"), np.diag([-2.0, 2.0, 2.5, 1.0]))
        nib.save(img, tmp_path / "maps" / f"s6mwp1sub-0{i + 1}.nii.gz")
        rows.append(f"sub-0{i + 1},{20 + 5 * i},{'mf'[i % 2]},{['ctrl', 'depr'][(i // 2) % 2]}")
    (tmp_path / "participants.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "study.yaml").write_text(GOOD)
    return tmp_path


def test_good_yaml_validates_without_writing(study):
    plan = load_study(study / "study.yaml")
    assert plan.out == study / "t_out"
    assert plan.maps == [str(study / "maps")]
    assert not plan.out.exists()


# (what to change in GOOD, the key the message must name, a fragment of the reason, the line)
BAD = [
    ("unknown key", ("  fraction: 0.8\n", "  fraction: 0.8\n  fractoin: 0.7\n"), "glm.fractoin", "unknown key", 12),
    ("unknown section", ("name: t\n", "name: t\nstats: {}\n"), "stats", "unknown key", 2),
    ("wrong type", ("  subsamples: 10\n", "  subsamples: many\n"), "glm.subsamples", "valid integer", 10),
    ("fraction above 1", ("  fraction: 0.8\n", "  fraction: 1.5\n"), "glm.fraction", "less than or equal to 1", 11),
    ("fraction zero", ("  fraction: 0.8\n", "  fraction: 0\n"), "glm.fraction", "greater than 0", 11),
    ("missing covariates file", ("participants.csv\n", "nothere.csv\n"), "inputs.covariates", "does not exist", 4),
    ("maps glob matches nothing", ("[maps]", "[\"nomaps/*.nii\"]"), "inputs.maps[0]", "matches nothing", 3),
    ("bad formula", ("age + C(sex) + C(group)", "age + * C(sex)"), "glm.formula", "parse", 6),
    ("formula column missing", ("age + C(sex) + C(group)", "age + height"), "glm.formula", "height", 6),
    ("contrast on a missing column", ("    age: age\n", "    age: height\n"), "glm.contrasts.age", "height", 8),
    ("duplicate contrast names", ("    depr: C(group)[T.depr]\n", "    depr: C(group)[T.depr]\n    age: -age\n"),
     "glm.contrasts.age", "duplicate key (first on line 8)", 10),
    ("contrast names differ only in case", ("    depr: C(group)[T.depr]\n", "    depr: C(group)[T.depr]\n    AGE: -age\n"),
     "glm.contrasts.AGE", "differ only in case", 10),
    ("id column absent", ("  covariates: participants.csv\n", "  covariates: participants.csv\n  id_column: subj\n"),
     "inputs.id_column", "subj", 5),
    ("missing required formula", ("  formula: age + C(sex) + C(group)\n", ""), "glm.formula", "Field required", 5),
    ("schema version", ("name: t\n", "schema_version: 2\nname: t\n"), "schema_version", "expected schema_version 1", 1),
    ("stratify column absent", ("  fraction: 0.8\n", "  fraction: 0.8\n  stratify: site\n"), "glm.stratify", "site", 12),
    ("TIV without a source", ("age + C(sex) + C(group)", "age + TIV"), "glm.formula", "TIV", 6),
    ("mask file missing", ("  fraction: 0.8\n", "  fraction: 0.8\n  mask: mask.nii.gz\n"), "glm.mask", "does not exist", 12),
    ("unknown atlas", ("  fraction: 0.8\n", "  fraction: 0.8\nroi:\n  atlas: nosuchatlas\n"), "roi.atlas", "nosuchatlas", 13),
    ("unknown atlas in a list", ("  fraction: 0.8\n", "  fraction: 0.8\nroi:\n  atlas: cat12,nosuchatlas\n"),
     "roi.atlas", "nosuchatlas", 13),
    ("store missing", ("  fraction: 0.8\n", "  fraction: 0.8\n  store: nostore\n"), "glm.store", "does not exist", 12),
    ("store with permutations", ("  fraction: 0.8\n", "  fraction: 0.8\n  store: maps\n  permutations: 10\n"),
     "glm.permutations", "not run from glm.store", 13),
    ("negative subsamples", ("  subsamples: 10\n", "  subsamples: -1\n"), "glm.subsamples", "greater than or equal to 0", 10),
    ("no inputs", ("  maps: [maps]\n", ""), "inputs", "expected 't1'", 2),
    ("yaml syntax", ("    age: age\n", "    age: [age\n"), "", "expected valid YAML", None),
]


@pytest.mark.parametrize("kind,edit,key,reason,line", BAD, ids=[b[0] for b in BAD])
def test_bad_yaml_one_line_error_naming_the_key_and_no_output(study, kind, edit, key, reason, line):
    old, new = edit
    assert old in GOOD
    (study / "study.yaml").write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        run_study(study / "study.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert f" {key}: " in msg or not key
    assert reason in msg
    if line is not None:
        assert msg.startswith(f"study.yaml:{line}: ")
    assert not (study / "t_out").exists()
    assert sorted(p.name for p in study.iterdir()) == ["maps", "participants.csv", "study.yaml"]


def test_atlas_keywords_and_lists_validate(study):
    for atlas in ("cat12", "lpba40,neuromorphometrics", "all"):
        (study / "study.yaml").write_text(GOOD + f"roi:\n  atlas: {atlas}\n")
        assert load_study(study / "study.yaml").config.roi.atlas == atlas


def test_cuda_device_without_cuda_is_refused(study):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    (study / "study.yaml").write_text("device: cuda\n" + GOOD)
    with pytest.raises(ConfigError, match=r"^study.yaml:1: device: .*no CUDA device"):
        run_study(study / "study.yaml")


def test_output_path_that_is_a_file_is_refused(study):
    (study / "t_out").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"out: expected a folder"):
        load_study(study / "study.yaml")


def test_missing_yaml_and_empty_yaml(study):
    with pytest.raises(ConfigError, match="expected a study YAML file; it does not exist"):
        load_study(study / "nope.yaml")
    (study / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty.yaml: expected a mapping of sections"):
        load_study(study / "empty.yaml")


def test_relative_paths_resolve_against_the_yaml_folder(study, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    plan = load_study(study / "study.yaml", out="cli_out")
    assert plan.covariates is not None and len(plan.covariates) == 8
    assert plan.out == Path.cwd() / "cli_out"  # --out is relative to the current folder


def test_native_roi_needs_the_deformation_fields(study):
    """roi.native with preprocessing but without preprocess.save_deformation is refused up front."""
    t1 = study / "t1"
    t1.mkdir()
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), "f4"), np.eye(4)), t1 / "sub-01_T1w.nii.gz")
    text = GOOD.replace("  maps: [maps]\n", "  t1: [t1]\n") + "preprocess:\n  fwhm: [6]\nroi:\n  native: true\n"
    (study / "study.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"roi\.native.*save_deformation"):
        load_study(study / "study.yaml")
    (study / "study.yaml").write_text(text.replace("  fwhm: [6]\n", "  fwhm: [6]\n  save_deformation: true\n"))
    assert load_study(study / "study.yaml").config.roi.native
