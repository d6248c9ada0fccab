"""The preprocessing's outputs for other tools on a small phantom run: a BIDS-derivatives
folder (--layout bids), CAT12's cat_/catROI_ XML read back by vbmkit's readers, the quality
rating and the QC figure."""

from __future__ import annotations

import json

import pytest

from tests.workflows.test_preprocess_e2e import make_phantom
from vbmkit.config import PreprocessConfig
from vbmkit.io.bids_write import check_derivative_structure
from vbmkit.io.cat12 import read_cat12_report
from vbmkit.io.catroi import read_catroi_xml
from vbmkit.workflows.preprocess import run_preprocess


@pytest.mark.slow
def test_bids_layout_run_is_a_derivative_dataset_with_cat12_files(tmp_path):
    make_phantom(tmp_path / "phantom.nii.gz")
    out = tmp_path / "out"
    settings = PreprocessConfig(layout="bids", segmentation_resolution_mm=2.0, skull_strip="never",
                                deformed_priors=False, registration_iterations=[10, 0, 0], fwhm=[6.0],
                                save_deformation=True, roi_atlases="lpba40,neuromorphometrics")
    summary = run_preprocess([tmp_path / "phantom.nii.gz"], out, settings, device="cpu", progress=False)
    assert summary.ok, summary.failed
    assert check_derivative_structure(out) == []
    anat = sorted(p.name for p in (out / "sub-phantom" / "anat").glob("*.nii.gz"))
    assert "sub-phantom_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz" in anat
    assert len(anat) == 4 + 2 + 2 + 1  # p0-p3, mwp1/2, s6mwp1/2, y_
    sidecar = json.loads((out / "sub-phantom" / "anat" /
                          "sub-phantom_space-MNI152NLin2009cAsym_label-GM_desc-s6modulated_probseg.json").read_text())
    assert sidecar["Space"] == "MNI152NLin2009cAsym" and sidecar["SmoothingFWHM_mm"] == 6.0
    assert sidecar["CAT12Name"] == "s6mwp1phantom" and sidecar["Sources"][0].endswith("phantom.nii.gz")
    report = json.loads((out / "sub-phantom" / "report" / "phantom.json").read_text())
    assert sidecar["SettingsHash"] == report["settings_hash"]
    rating = report["quality_rating"]
    assert 0.5 <= rating["marks"]["IQR"] <= 10.5 and rating["grade"][0] in "ABCDEF"
    cat = read_cat12_report(out / "sub-phantom" / "report" / "cat_phantom.xml")
    vol = report["volumes_ml"]
    assert cat.tiv_ml == pytest.approx(vol["tiv"], abs=1e-6)
    assert (cat.csf_ml, cat.gm_ml, cat.wm_ml) == pytest.approx((vol["csf"], vol["gm"], vol["wm"]), abs=1e-6)
    assert cat.ratings["IQR"] == pytest.approx(rating["marks"]["IQR"], abs=1e-9)
    roi = read_catroi_xml(out / "sub-phantom" / "label" / "catROI_phantom.xml")
    assert set(roi["atlas"]) == {"lpba40", "neuromorphometrics"}
    nmm_gm = roi[(roi["atlas"] == "neuromorphometrics") & (roi["tissue"] == "gm")]["volume_ml"].sum()
    assert 0.8 * vol["gm"] < nmm_gm <= vol["gm"] + 1e-6  # native GM inside the atlas, never more than all GM
    png = (out / "sub-phantom" / "report" / "phantom_qc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["outputs"]["qc_png"] == "sub-phantom/report/phantom_qc.png"
    again = run_preprocess([tmp_path / "phantom.nii.gz"], out, settings, device="cpu", progress=False)
    assert again.skipped == ["phantom"]
