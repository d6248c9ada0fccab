"""The study report shows the results (tested tails, cluster table) before the cohort and QC, with the methods."""

from __future__ import annotations

import html
import re

import nibabel as nib
import numpy as np
import pandas as pd

from vbmkit.config import GlmConfig
from vbmkit.report.methods import methods_paragraph
from vbmkit.report.study_report import write_study_report
from vbmkit.workflows.glm import run_glm

SHAPE = (9, 8, 7)
AFFINE = np.array([[-2.0, 0, 0, 8.0], [0, 2.0, 0, -8.0], [0, 0, 2.5, -8.0], [0, 0, 0, 1.0]])


def test_results_before_cohort_and_methods_included(tmp_path):
    rng = np.random.default_rng(0)
    n = 12
    age = np.linspace(20, 80, n)
    maps = tmp_path / "maps"
    maps.mkdir()
    effect = np.zeros(SHAPE)
    effect[2:5, 2:5, 2:5] = 0.004
    for i in range(n):
        data = 0.5 + effect * (age[i] - 50) + 0.01 * rng.standard_normal(SHAPE)
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), str(maps / f"s6mwp1sub-{i + 1:02d}.nii.gz"))
    table = pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(n)], "age": age})
    study = tmp_path / "study"
    study.mkdir()
    table.to_csv(study / "covariates.tsv", sep="\t", index=False)
    settings = GlmConfig(formula="age", contrasts={"age": "age"}, subsamples=3, permutations=0, mask_threshold=0.0,
                         device="cpu")
    summary = run_glm([str(maps / "*.nii.gz")], study / "covariates.tsv", id_column="participant_id",
                      settings=settings, out=study / "glm", progress=False)
    page = write_study_report(study, title="Study", study_name="s", yaml_text="glm: {}").read_text(encoding="utf-8")
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings.index("Contrast: age") < headings.index("Cohort") < headings.index("Quality control")
    assert headings.index("Methods") < headings.index("Cohort")
    methods = html.unescape(page.split("<h2>Methods</h2>")[1].split("</section>")[0])
    assert methods_paragraph(summary) in methods and "Benjamini" in methods
    contrast = html.unescape(page.split("<h2>Contrast: age</h2>")[1].split("</section>")[0])
    assert "Glass brain. age, positive tail" in contrast and "negative tail" not in contrast.split("median")[0]
    assert "neuromorphometrics_region" in contrast  # the cluster table with sub-peaks
    assert str(tmp_path) not in page
