"""``simulate_cohort`` without images (truth only): files, covariates, volumes, resume."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from vbmkit.errors import ConfigError
from vbmkit.workflows.simulate import simulate_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return out, simulate_cohort(out, n=7, seed=3, images=False, compress=False)


def test_participants_and_truth_files(cohort):
    out, summary = cohort
    assert summary["written"] == [f"sub-0{i}" for i in range(1, 8)]
    table = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(table.columns) == ["participant_id", "age", "sex", "group", "head_scale", "tiv_ml"]
    assert sorted(table["sex"]) == ["F"] * 3 + ["M"] * 4  # balanced as far as n = 7 allows
    assert sorted(table["group"]) == ["control"] * 4 + ["patient"] * 3
    for name in ("sub-01_T1w", "sub-04_T1w"):
        for kind in ("mwp1", "mwp2", "s6mwp1"):
            img = nib.load(out / "truth" / name / "mri" / f"{kind}{name}.nii")
            assert img.shape == (113, 137, 113)  # Template_4_GS grid
    regions = json.loads((out / "truth" / "regions.json").read_text())
    assert regions["age"] == ["lHip", "rHip", "lSupFroG", "rSupFroG"]
    assert not (out / "sub-01").exists()  # no T1 images asked for


def test_volumes_are_plausible_and_scale_with_head_size(cohort):
    out, _ = cohort
    table = pd.read_csv(out / "participants.tsv", sep="\t")
    vols = pd.read_csv(out / "truth" / "volumes.csv")
    # TIV of adults is roughly 1,200-2,000 mL; the default head scale aims at ~1,600
    assert vols["tiv_ml"].between(1200, 2100).all()
    assert np.allclose(vols["tiv_ml"].round(2), table["tiv_ml"])
    # GM volume in mL equals the sum of the modulated map times the voxel volume
    img = nib.load(out / "truth" / "sub-02_T1w" / "mri" / "mwp1sub-02_T1w.nii")
    gm = float(np.asarray(img.dataobj, dtype=np.float64).sum()) * 1.5**3 / 1000
    assert gm == pytest.approx(vols.loc[1, "gm_ml"], rel=1e-5)  # float32 map vs float64 sum


def test_effect_maps_are_negative_in_planted_regions(cohort):
    out, _ = cohort
    age = np.asarray(nib.load(out / "truth" / "effect_age.nii.gz").dataobj)
    group = np.asarray(nib.load(out / "truth" / "effect_group.nii.gz").dataobj)
    # shrinkage fields: loss in the regions, at most a trace of gain around them (the field's
    # divergence follows the smoothed region edge with a wider stencil)
    assert age.min() < -1e-3 and age.max() <= 0.05 * -age.min()
    assert group.min() < -1e-2 and group.max() <= 0.05 * -group.min()
    # distinct regions: only their soft (3 mm) edges may touch, never their cores
    assert not ((age < 0.5 * age.min()) & (group < 0.5 * group.min())).any()


def test_rerun_skips_written_subjects(cohort):
    out, _ = cohort
    again = simulate_cohort(out, n=7, seed=3, images=False, compress=False)
    assert again["skipped"] == [f"sub-0{i}" for i in range(1, 8)] and again["written"] == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="--n: expected at least 4 subjects; got 2"):
        simulate_cohort(tmp_path, n=2)
    with pytest.raises(ConfigError, match="region 'lFoo': expected an LPBA40 abbreviation"):
        simulate_cohort(tmp_path, n=4, age_regions=("lFoo",), images=False)


@pytest.mark.filterwarnings("ignore:contrast 'age_neg'")  # 7 subjects: age and TIV may correlate
def test_a_study_on_the_truth_takes_tiv_from_volumes_csv(cohort):
    """inputs.maps = the truth folder: TIV comes from truth/volumes.csv; ROI tables are written."""
    from vbmkit.workflows.study import run_study

    out, _ = cohort
    (out / "s.yaml").write_text(
        "name: s\ninputs:\n  maps: [truth]\n  covariates: participants.tsv\n"
        "glm:\n  formula: age + TIV\n  contrasts:\n    age_neg: -age\n  subsamples: 0\n"
        "roi:\n  statistics: false\n")
    prov = run_study(out / "s.yaml")
    assert prov["tiv_from"] == "maps"
    merged = pd.read_csv(out / "s_out" / "covariates.tsv", sep="\t")
    assert np.allclose(merged["TIV"], merged["tiv_ml"], atol=0.01)  # tiv_ml is rounded to 0.01 mL
    assert (out / "s_out" / "roi" / "roi_long.csv").is_file()
    assert prov["stages"]["roi"]["status"].startswith("7 subjects")
    assert json.loads((out / "s_out" / "glm" / "summary.json").read_text())["n_subjects"] == 7


def test_demo_yaml_validates_on_a_simulated_cohort(cohort, tmp_path):
    """examples/demo.yaml (what `vbmkit demo` runs) is valid for a cohort written by simulate."""
    import yaml

    from vbmkit.workflows.demo.study import demo_yaml_text
    from vbmkit.workflows.study.plan import load_study

    out, _ = cohort
    (tmp_path / "cohort").symlink_to(out, target_is_directory=True)
    (tmp_path / "demo.yaml").write_text(demo_yaml_text(full=False))
    plan = load_study(tmp_path / "demo.yaml")
    assert plan.tiv_from == "maps" and plan.out == tmp_path / "study"
    assert set(plan.glm.contrasts) == {"age_decline", "patients_lower"}
    full = yaml.safe_load(demo_yaml_text(full=True))
    assert full["inputs"]["t1"] == ["cohort"] and "maps" not in full["inputs"] and "preprocess" in full
