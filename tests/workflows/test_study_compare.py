"""The compare stage of a study takes the study's GLM: its settings whole, its fit reused (no refit)."""

from __future__ import annotations

import json

from tests.workflows.compare_fixtures import make_study
from vbmkit.workflows.study import run_study

YAML = """\
name: cmp
inputs:
  maps: [ours]
  covariates: participants.tsv
glm:
  maps: s6mwp1
  formula: age
  contrasts:
    neg_age: -age
  subsamples: 10
  fraction: 0.8
  mask_threshold: 0.05
  threshold: 2.5
compare:
  cat12: cat12
  ours: ours
report:
  title: compare stage
"""


def test_compare_stage_reuses_the_study_glm_with_all_its_settings(tmp_path):
    study = make_study(tmp_path, n=12)
    covariates = study["covariates"]
    path = tmp_path / "study.yaml"
    path.write_text(YAML.replace("participants.tsv", covariates.name))
    prov = run_study(path)
    out = tmp_path / "cmp_out"
    assert prov["stages"]["compare"]["status"] == "ran"
    assert not (out / "compare" / "glm_ours").exists()  # the vbmkit side is OUT/glm, not fitted again
    ref = json.loads((out / "compare" / "glm_cat12" / "summary.json").read_text())
    ours = json.loads((out / "glm" / "summary.json").read_text())
    # settings the old compare stage dropped (threshold, mask_threshold) reach the reference fit
    assert ref["settings"]["threshold"] == 2.5 and ref["settings"]["mask_threshold"] == 0.05
    assert {k: v for k, v in ref["settings"].items() if k != "maps"} == \
        {k: v for k, v in ours["settings"].items() if k != "maps"}
    metrics = json.loads((out / "compare" / "metrics.json").read_text())
    c = metrics["contrasts"]["neg_age"]
    assert c["same_draws"] is True and c["n_subjects"] == ours["n_subjects"]
    assert c["r_median_t"] is not None
    assert run_study(path)["stages"]["compare"]["status"] == "up to date"
