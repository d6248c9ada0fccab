"""vbmkit glm's report.html: self-contained, one figure per tested tail, cluster table, methods paragraph."""

from __future__ import annotations

from html.parser import HTMLParser

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.ndimage

from vbmkit.config import GlmConfig
from vbmkit.report.methods import REFERENCES, methods_paragraph
from vbmkit.workflows.glm import run_glm

SHAPE = (16, 9, 8)
# x flipped, anisotropic voxels
WORLD = np.array([[-2.0, 0, 0, 16.0], [0, 2.5, 0, -10.0], [0, 0, 2.0, -8.0], [0, 0, 0, 1.0]])
N = 14


class _Page(HTMLParser):
    """Collects images (src, alt), links and the text of the page."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.text, self.tables = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append((a.get("src", ""), a.get("alt", "")))
        if tag in ("a", "link", "script"):
            self.links.append(a.get("href") or a.get("src") or "")
        if tag == "table":
            self.tables += 1

    def handle_data(self, data):
        self.text.append(data)


def _blob(centre, height, sigma=1.0):
    d2 = sum((np.indices(SHAPE)[a] - centre[a]) ** 2 for a in range(3))
    return height * np.exp(-d2 / (2 * sigma ** 2))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(7)
    age = np.linspace(20, 80, N)
    effect = (-_blob((4, 4, 4), 1.0) + _blob((11, 4, 4), 1.0)) * 0.004  # one negative, one positive blob
    for i in range(N):
        noise = scipy.ndimage.gaussian_filter(rng.standard_normal(SHAPE), 0.7) * 0.01
        data = 0.5 + effect * (age[i] - 50) + noise
        nib.save(nib.Nifti1Image(data.astype(np.float32), WORLD), str(root / f"s6mwp1sub-{i + 1:02d}.nii.gz"))
    pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(N)], "age": age,
                  "sex": ["f", "m"] * (N // 2)}).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def _run(cohort, out, **kw):
    base = {"formula": "age + C(sex)", "contrasts": {"age": "age", "sex": "F: C(sex)[T.m]"}, "subsamples": 0,
            "permutations": 0, "mask_threshold": 0.0, "device": "cpu"}
    summary = run_glm([str(cohort / "s6mwp1sub-*.nii.gz")], cohort / "participants.tsv", id_column="participant_id",
                      settings=GlmConfig(**{**base, **kw}), out=out, progress=False)
    html = (out / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    return summary, html, page


@pytest.fixture(scope="module")
def both_tails(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("both") / "glm"
    return (out, *_run(cohort, out, permutations=10, tfce=True, tail="both", subsamples=4))


def _glass(page, contrast):
    return [alt for _, alt in page.images if alt.startswith("Glass brain. ") and f"{contrast}, " in alt]


def test_self_contained_without_machine_paths(both_tails, cohort):
    out, summary, html, page = both_tails
    assert summary["files"]["report"] == "report.html"
    assert page.images and all(src.startswith("data:image/png;base64,") for src, _ in page.images)
    assert all(link.startswith("#") for link in page.links)  # in-page anchors only
    assert "http://" not in html and "https://" not in html
    for path in (str(out), str(cohort), str(out.parent), "/tmp", "/home", "/work"):
        assert path not in html


def test_one_image_per_tested_tail(both_tails, cohort, tmp_path):
    _, summary, html, page = both_tails
    age = _glass(page, "age")
    assert len(age) == 2 and any("positive tail" in a for a in age) and any("negative tail" in a for a in age)
    assert len(_glass(page, "sex")) == 1  # F: positive only
    slices = [alt for _, alt in page.images if alt.startswith("Axial slices over the template. age, ")]
    assert len(slices) == 2
    assert "TFCE, FWE p &lt; 0.05, 10 permutations" in html or "No voxel of the" in html
    _, _, page_one = _run(cohort, tmp_path / "one")  # no permutations: positive tail, uncorrected, stated
    age = _glass(page_one, "age")
    assert len(age) == 1 and "positive tail" in age[0] and "uncorrected p < 0.001" in age[0]


def test_cluster_table_and_methods(both_tails):
    out, summary, html, page = both_tails
    text = " ".join(page.text)
    table = pd.read_csv(out / "age" / "clusters.csv")
    assert len(table) >= 1 and "neuromorphometrics_region" in text and "p_fwe_cluster" in text
    with_clusters = sum(len(pd.read_csv(out / c["files"]["clusters"])) > 0 for c in summary["contrasts"].values())
    assert page.tables == 1 + with_clusters  # the overview + one cluster table per contrast with clusters
    assert "Methods" in text and "formula 'age + C(sex)'" in text
    for cited in ("Freedman & Lane 1983", "Smith & Nichols 2009", "Benjamini & Hochberg 1995",
                  "Shattuck et al. 2008", "Fisch et al. 2024"):
        assert cited in text
    assert "E = 0.5, H = 2 and 6-connectivity" in text and "10 transforms" in text and "seed 0" in text
    assert "4 random subsets of 80 %" in text and "sqrt(0.8)" in text
    for ref in REFERENCES.values():
        assert ref in text


def test_methods_paragraph_without_permutations():
    summary = {"vbmkit_version": "9.9", "formula": "age", "design_columns": ["Intercept", "age"], "n_subjects": 10,
               "n_voxels": 100, "standardized": {"age": {"mean": 1, "sd": 2}},
               "settings": {"maps": "s6mwp1", "mask_threshold": 0.1, "mask_rule": "all", "subsamples": 0, "seed": 3},
               "contrasts": {"age": {"type": "t", "df": [1.0, 8.0]}}}
    text = methods_paragraph(summary, versions={"python": "3.x", "torch": "t"})
    assert "vbmkit 9.9" in text and "PyTorch t" in text and "age (t, df 8)" in text
    assert "every image exceeded 0.1" in text and "No permutation inference was run" in text
    assert "age centred and scaled" in text
