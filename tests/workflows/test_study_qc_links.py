"""The sample-homogeneity QC links each outlier and each low image-quality grade to its QC image."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vbmkit.io.nifti import save_volume
from vbmkit.workflows.study.qc import LOW_GRADE_PERCENT, run_qc


def _map_path(pre, name, layout):
    """cat12: ``<name>/mri/mwp1<name>``; bids: ``sub-XX/anat/sub-XX_space-..._desc-modulated_probseg``."""
    if layout == "cat12":
        return pre / name / "mri" / f"mwp1{name}.nii.gz", pre / name
    sub = pre / name.split("_")[0]
    return sub / "anat" / f"{sub.name}_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz", sub


@pytest.mark.parametrize("layout", ["cat12", "bids"])
def test_outliers_and_low_grades_are_listed_with_their_image(tmp_path, layout):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.9, (9, 8, 7))
    maps = []
    for i in range(8):
        name = f"sub-{i:02d}_T1w"
        data = base + rng.normal(0, 0.02, base.shape)
        if i == 5:  # an outlier: its own random map
            data = rng.uniform(0.2, 0.9, base.shape)
        path, sub = _map_path(tmp_path / "pre", name, layout)
        save_volume(path, data, np.diag([2.0, 2.0, 2.0, 1.0]))
        maps.append(path)
        pct = 60.0 if i == 2 else 85.0
        (sub / "report").mkdir()
        (sub / "report" / f"{name}.json").write_text(json.dumps(
            {"quality_rating": {"marks": {"IQR": (105 - pct) / 10}, "IQR_percent": pct,
                                "grade": "D" if i == 2 else "B"}}))
        if i in (2, 5):
            (sub / "report" / f"{name}_qc.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    summary = run_qc(maps, tmp_path / "study" / "qc")
    table = pd.read_csv(tmp_path / "study" / "qc" / "qc.csv").set_index("name")
    assert summary["flagged"] == ["sub-05_T1w"] and summary["low_grade_percent"] == LOW_GRADE_PERCENT
    assert table.loc["sub-02_T1w", "grade"] == "D" and table.loc["sub-03_T1w", "IQR_percent"] == 85.0
    folder = "sub-05_T1w" if layout == "cat12" else "sub-05"
    assert table.loc["sub-05_T1w", "qc_image"] == f"../../pre/{folder}/report/sub-05_T1w_qc.png"
    assert pd.isna(table.loc["sub-03_T1w", "qc_image"])
    review = {r["name"]: r for r in summary["review"]}
    assert set(review) == {"sub-02_T1w", "sub-05_T1w"}
    assert review["sub-02_T1w"]["reasons"] == ["image quality 60.0 % (D)"]
    assert review["sub-05_T1w"]["reasons"][0].startswith("homogeneity outlier")
    assert (tmp_path / "study" / "qc" / review["sub-02_T1w"]["qc_image"]).is_file()
    # written into a temporary folder that later replaces study/qc: links relative to study/qc
    run_qc(maps, tmp_path / "study" / ".tmp" / "qc", links_from=tmp_path / "study" / "qc")
    moved = pd.read_csv(tmp_path / "study" / ".tmp" / "qc" / "qc.csv").set_index("name")
    assert moved.loc["sub-05_T1w", "qc_image"] == table.loc["sub-05_T1w", "qc_image"]
