"""CAT12 catROI XML, CAT12 group export and deepmriprep volume tables into the long table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.foreign_writers import write_catroi_xml
from vbmkit.io.catroi import (
    LONG_COLUMNS,
    RoiTableError,
    read_cat12_group_csv,
    read_catroi_xml,
    read_deepmriprep_volumes,
    write_cat12_group_csv,
)

# CAT12's documented layout (CAT12 manual, label/catROI_<name>.xml), two atlases, no Vcsf in one.
CAT12_XML = """<?xml version="1.0" encoding="UTF-8"?>
<S>
  <neuromorphometrics>
    <ids>[4;11]</ids>
    <names><item>3rd Ventricle</item><item>4th Ventricle</item></names>
    <data><Vgm>[0.01;0.02]</Vgm><Vwm>[0;0]</Vwm><Vcsf>[1.5;2.25]</Vcsf></data>
  </neuromorphometrics>
  <lpba40>
    <ids>[21;22;182]</ids>
    <names><item>lSupFroG</item><item>rSupFroG</item><item>bBst</item></names>
    <data><Vgm>[24.1234567;23.9;0.5]</Vgm><Vwm>[12.5 13.25 20.0]</Vwm><mean_thickness>[2;2;2]</mean_thickness></data>
  </lpba40>
</S>
"""


def test_read_cat12_layout(tmp_path):
    p = tmp_path / "label" / "catROI_sub-01_T1w.xml"
    p.parent.mkdir()
    p.write_text(CAT12_XML)
    long = read_catroi_xml(p)
    assert list(long.columns) == LONG_COLUMNS
    assert set(long["subject"]) == {"sub-01_T1w"}
    lp = long[long["atlas"] == "lpba40"].set_index(["region", "tissue"])["volume_ml"]
    assert lp[("lSupFroG", "gm")] == 24.1234567 and lp[("bBst", "wm")] == 20.0
    assert set(long[long["atlas"] == "lpba40"]["tissue"]) == {"gm", "wm"}  # thickness skipped
    nm = long[long["atlas"] == "neuromorphometrics"]
    assert nm[nm["tissue"] == "csf"]["volume_ml"].tolist() == [1.5, 2.25]
    assert long.set_index("region").loc["lSupFroG", "hemisphere"].iloc[0] == "left"


def test_older_layout_nested_and_text_names(tmp_path):
    p = tmp_path / "catROI_old.xml"
    p.write_text("<S><ROI><lpba40><ids>21, 22</ids><names>lSupFroG;rSupFroG</names>"
                 "<data><Vgm>1.5 2.5</Vgm></data></lpba40></ROI></S>")
    long = read_catroi_xml(p, subject="s1")
    assert long["region"].tolist() == ["lSupFroG", "rSupFroG"]
    assert long["volume_ml"].tolist() == [1.5, 2.5] and set(long["subject"]) == {"s1"}


def test_xml_round_trip_same_numbers(tmp_path):
    p = tmp_path / "catROI_a.xml"
    p.write_text(CAT12_XML)
    first = read_catroi_xml(p)
    first.loc[0, "volume_ml"] = 1.0 / 3.0  # a number that needs all 17 digits
    out = write_catroi_xml(tmp_path / "catROI_b.xml", first.assign(subject="b"))
    back = read_catroi_xml(out)
    pd.testing.assert_frame_equal(back.drop(columns="subject"), first.drop(columns="subject"))


def test_xml_errors(tmp_path):
    s = tmp_path / "catROIs_x.xml"
    s.write_text(CAT12_XML)
    with pytest.raises(RoiTableError, match="surface ROI file .*not volumes"):
        read_catroi_xml(s)
    bad = tmp_path / "catROI_bad.xml"
    bad.write_text("<S><lpba40><ids>[1;2]</ids><names><item>a</item></names><data/></lpba40></S>")
    with pytest.raises(RoiTableError, match="expected as many names as ids; got 1 names and 2 ids"):
        read_catroi_xml(bad)
    bad.write_text("<S><lpba40><ids>[1]</ids><names><item>a</item></names>"
                   "<data><Vgm>[1;2]</Vgm></data></lpba40></S>")
    with pytest.raises(RoiTableError, match="expected 1 values like <ids>; got 2"):
        read_catroi_xml(bad)
    bad.write_text("<S><other/></S>")
    with pytest.raises(RoiTableError, match="found none"):
        read_catroi_xml(bad)
    bad.write_text("<S><unclosed></S>")
    with pytest.raises(RoiTableError, match="could not parse"):
        read_catroi_xml(bad)


def test_group_csv_round_trip(tmp_path):
    long = pd.DataFrame({
        "subject": ["s1", "s1", "s2", "s2"], "atlas": "lpba40", "region_id": [22, 21, 22, 21],
        "region": ["rSupFroG", "lSupFroG"] * 2, "hemisphere": ["right", "left"] * 2,
        "tissue": "gm", "volume_ml": [1.25, 2.5, 3.125, 4.0]})
    p = write_cat12_group_csv(tmp_path / "study_catROI_lpba40_Vgm.csv", long)
    assert p.read_text().splitlines()[0] == "names,rSupFroG,lSupFroG"
    back = read_cat12_group_csv(p)
    assert back["region_id"].tolist() == [22, 22, 21, 21]  # ids from the shipped atlas table
    merged = back.merge(long, on=["subject", "region"], suffixes=("", "_in"))
    np.testing.assert_array_equal(merged["volume_ml"], merged["volume_ml_in"])
    with pytest.raises(RoiTableError, match="could not tell the atlas"):
        read_cat12_group_csv(tmp_path / "volumes.csv")


def test_deepmriprep_volumes_mm3_to_ml(tmp_path):
    p = tmp_path / "lpba40_volumessub-01_T1w.csv"
    pd.DataFrame({"ROIid": [21, 182], "ROIname": ["Left Superior Frontal Gyrus", "Bothside Brainstem"],
                  "gmv_mm3": [25000.0, 500.0], "wmv_mm3": [12000.0, 20000.0],
                  "csfv_mm3": [3000.0, 100.0], "region_mm3": [41000.0, 21000.0]}).to_csv(p)
    long = read_deepmriprep_volumes(p)  # written with the pandas index column: ignored
    assert set(long["subject"]) == {"sub-01_T1w"} and set(long["atlas"]) == {"lpba40"}
    v = long.set_index(["region", "tissue"])["volume_ml"]
    assert v[("lSupFroG", "gm")] == 25.0 and v[("bBst", "region")] == 21.0
    bids = tmp_path / "sub-02_lpba40_volumes.csv"
    pd.read_csv(p, index_col=0).to_csv(bids, index=False)
    assert set(read_deepmriprep_volumes(bids)["subject"]) == {"sub-02"}
    bad = tmp_path / "lpba40_volumesx.csv"
    pd.DataFrame({"ROIid": [1], "ROIname": ["a"], "gmv_mm3": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(RoiTableError, match=r"missing \['wmv_mm3', 'csfv_mm3', 'region_mm3'\]"):
        read_deepmriprep_volumes(bad)


@pytest.mark.realdata
def test_cat12_lpba40_xml_reads_back(shared_data, tmp_path):
    """All 56 CAT12 LPBA40 regions in the documented layout, values with 10 significant digits."""
    cat = pd.read_csv(shared_data / "cat12_labels" / "lpba40.csv", sep=";")
    cat = cat[cat["ROIid"] != 0]
    rng = np.random.default_rng(0)
    gm, wm = np.round(rng.uniform(0.5, 30, len(cat)), 8), np.round(rng.uniform(0, 25, len(cat)), 8)
    xml = ("<S><lpba40><ids>[" + ";".join(map(str, cat["ROIid"])) + "]</ids><names>"
           + "".join(f"<item>{a}</item>" for a in cat["ROIabbr"]) + "</names><data>"
           + "<Vgm>[" + ";".join(f"{v:.8f}" for v in gm) + "]</Vgm>"
           + "<Vwm>[" + ";".join(f"{v:.8f}" for v in wm) + "]</Vwm></data></lpba40></S>")
    p = tmp_path / "catROI_subj.xml"
    p.write_text(xml)
    long = read_catroi_xml(p)
    assert len(long) == 56 * 2
    np.testing.assert_array_equal(long[long["tissue"] == "gm"]["volume_ml"], gm)
    np.testing.assert_array_equal(long[long["tissue"] == "wm"]["volume_ml"], wm)
    assert long["region"].iloc[:56].tolist() == cat["ROIabbr"].tolist()


def test_subject_tiv_from_reports(tmp_path):
    from vbmkit.io.catroi import subject_tiv_ml

    ours = tmp_path / "out" / "s1"
    (ours / "report").mkdir(parents=True)
    (ours / "report" / "s1.json").write_text('{"volumes_ml": {"gm": 600.0, "tiv": 1450.5}}')
    assert subject_tiv_ml(ours / "mri" / "mwp1s1.nii.gz", "s1") == 1450.5
    cat = tmp_path / "cat"
    (cat / "report").mkdir(parents=True)
    (cat / "report" / "cat_s2.xml").write_text(
        "<S><subjectmeasures><vol_TIV>1523.25</vol_TIV><vol_abs_CGW>[300 650 560 0 0]</vol_abs_CGW>"
        "</subjectmeasures></S>")
    assert subject_tiv_ml(cat / "mri" / "mwp1s2.nii", "s2") == 1523.25
    (cat / "report" / "cat_s3.xml").write_text("<S><QAS><SM><vol_TIV>1400</vol_TIV></SM></QAS></S>")
    assert subject_tiv_ml(cat / "mri" / "mwp1s3.nii", "s3") == 1400.0
    assert subject_tiv_ml(cat / "mri" / "mwp1s4.nii", "s4") is None
