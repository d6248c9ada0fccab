"""CAT12 folders written in CAT12's documented layout and XML structure are read back exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.fixtures.foreign_writers import format_cat_xml, write_cat12_report
from tests.workflows.compare_fixtures import make_study
from vbmkit.errors import ImageError
from vbmkit.io.cat12 import (
    Cat12Error,
    find_outputs,
    mark_to_percent,
    read_cat12_report,
    read_cat_xml,
    split_kind,
)
from vbmkit.io.catroi import read_catroi_xml

# A report as CAT12 12.8 writes it (cat_io_xml: root <S>, numbers as text, vectors in brackets).
CAT12_XML = """<?xml version="1.0" encoding="utf-8"?>
<S>
  <filedata><path>/data/study/sub-01/anat</path><file>sub-01_T1w</file></filedata>
  <qualitymeasures><res_vx_vol>[0.8676 0.8676 1]</res_vx_vol><NCR>0.0923</NCR></qualitymeasures>
  <qualityratings><res_RMS>2.03</res_RMS><NCR>2.41</NCR><ICR>1.52</ICR><IQR>2.2617</IQR><SIQR>2.3015</SIQR></qualityratings>
  <subjectmeasures>
    <vol_TIV>1523.3889</vol_TIV>
    <vol_abs_CGW>[395.1209 720.3391 407.9289 0.6211 0]</vol_abs_CGW>
    <vol_rel_CGW>[0.25937 0.47285 0.26777 0.00040771 0]</vol_rel_CGW>
  </subjectmeasures>
</S>
"""

OLD_XML = """<?xml version="1.0" encoding="utf-8"?>
<S><QAS><SM><vol_TIV>1402.5</vol_TIV><vol_abs_CGW>[300.5 650.25 451.75]</vol_abs_CGW>
<vol_rel_CGW>[0.2142 0.4636 0.3221]</vol_rel_CGW></SM></QAS>
<QAM><QM><NCR>3.1</NCR><ICR>1.9</ICR><rms>2.75</rms></QM></QAM></S>
"""


def test_reads_a_cat12_report_exactly(tmp_path):
    p = tmp_path / "report" / "cat_sub-01_T1w.xml"
    p.parent.mkdir()
    p.write_text(CAT12_XML)
    rep = read_cat12_report(p)
    assert rep.version == "new"
    assert (rep.tiv_ml, rep.csf_ml, rep.gm_ml, rep.wm_ml, rep.wmh_ml) == (1523.3889, 395.1209, 720.3391, 407.9289, 0.6211)
    assert rep.rel_cgw == (0.25937, 0.47285, 0.26777, 0.00040771, 0.0)
    assert rep.ratings == {"NCR": 2.41, "ICR": 1.52, "res_RMS": 2.03, "IQR": 2.2617, "SIQR": 2.3015}
    assert rep.ratings_percent["IQR"] == pytest.approx(105 - 22.617)
    tree = read_cat_xml(p)
    assert tree["qualitymeasures"]["res_vx_vol"] == [0.8676, 0.8676, 1.0]
    assert tree["filedata"]["file"] == "sub-01_T1w"


def test_reads_old_field_names(tmp_path):
    p = tmp_path / "cat_old.xml"
    p.write_text(OLD_XML)
    rep = read_cat12_report(p)
    assert rep.version == "old"
    assert (rep.tiv_ml, rep.csf_ml, rep.gm_ml, rep.wm_ml) == (1402.5, 300.5, 650.25, 451.75)
    assert math.isnan(rep.wmh_ml)  # three-element vol_abs_CGW of old releases
    assert rep.ratings == {"NCR": 3.1, "ICR": 1.9, "IQR": 2.75}  # rms is the old IQR


@pytest.mark.parametrize("version", ["new", "old"])
def test_writer_round_trip_in_cat12_layout(tmp_path, version):
    p = tmp_path / "report" / "cat_sub-07_T1w.xml"
    marks = {"NCR": 2.5, "ICR": 1.25, "res_RMS": 2.0, "IQR": 2.125, "SIQR": 2.25}
    write_cat12_report(p, name="sub-07_T1w", tiv_ml=1500.75, vol_abs_cgw=[400.5, 700.25, 399.0, 1.0, 0.0],
                       ratings=marks, version=version)
    text = p.read_text()
    assert text.startswith('<?xml version="1.0"') and "<S>" in text
    assert "<vol_abs_CGW>[400.5 700.25 399 1 0]</vol_abs_CGW>" in text  # numbers stored as CAT12 does
    rep = read_cat12_report(p)
    assert rep.version == version
    assert (rep.tiv_ml, rep.csf_ml, rep.gm_ml, rep.wm_ml, rep.wmh_ml) == (1500.75, 400.5, 700.25, 399.0, 1.0)
    assert rep.ratings == (marks if version == "new" else {k: v for k, v in marks.items()})
    assert rep.rel_cgw[1] == pytest.approx(700.25 / 1500.75, rel=1e-9)


def test_format_cat_xml_items_and_numbers():
    text = format_cat_xml({"names": ["lSupFroG", "rSupFroG"], "v": 3, "x": [1.5, float("nan")], "e": None})
    assert "<item>lSupFroG</item>" in text and "<v>3</v>" in text and "<x>[1.5 NaN]</x>" in text


def test_report_errors(tmp_path):
    bad = tmp_path / "cat_bad.xml"
    bad.write_text("<S><subjectmeasures>")
    with pytest.raises(Cat12Error, match="expected a CAT12 XML file"):
        read_cat12_report(bad)
    other = tmp_path / "cat_other.xml"
    other.write_text("<S><foo>1</foo></S>")
    with pytest.raises(Cat12Error, match=r"expected a CAT12 report with subjectmeasures/vol_TIV.*\['foo'\]"):
        read_cat12_report(other)
    with pytest.raises(Cat12Error, match="expected 'new' or 'old'"):
        write_cat12_report(tmp_path / "x.xml", name="x", tiv_ml=1, vol_abs_cgw=[1, 1, 1], version="v2")


def test_split_kind():
    assert split_kind("s6mwp1sub-01_T1w", ["p0", "mwp1"]) == ("s6mwp1", "sub-01_T1w")
    assert split_kind("s4.5mwc1sub-01", ["c1"]) == ("s4.5mwc1", "sub-01")
    assert split_kind("mwp1sub-01", ["p1", "mwp1"]) == ("mwp1", "sub-01")
    assert split_kind("sub-01_T1w", ["p0", "mwp1"]) is None
    assert mark_to_percent(0.5) == 100.0 and mark_to_percent(10.5) == 0.0


@pytest.mark.parametrize(("layout", "old_xml"), [("standard", False), ("bids", False), ("standard", True),
                                                  ("bids", True)])
def test_find_outputs_both_layouts(tmp_path, layout, old_xml):
    study = make_study(tmp_path, n=3, layout=layout, extra_ours=False, old_xml=old_xml)
    found = find_outputs(study["cat12"])
    assert list(found) == study["names"]
    sub = found["sub-02_T1w"]
    assert sub.layout == layout
    assert set(sub.maps) == {"p0", "mwp1", "mwp2", "s6mwp1"}
    assert sub.report is not None and sub.report.name == "cat_sub-02_T1w.xml"
    assert sub.roi is not None and sub.roi.name == "catROI_sub-02_T1w.xml"
    if layout == "bids":
        assert sub.maps["p0"].parent.parts[-2:] == ("sub-02", "anat")
    else:
        assert sub.maps["p0"].parent.name == "mri"
    # the maps, the report and the ROI volumes read back exactly what was written
    import nibabel as nib

    p0_ref = study["truth"]["p0"]["sub-02_T1w"][1]
    assert np.array_equal(np.asarray(nib.load(sub.maps["p0"]).dataobj), p0_ref)
    rep = read_cat12_report(sub.report)
    assert rep.version == ("old" if old_xml else "new")
    assert rep.ratings["IQR"] == 2.05 and rep.ratings["NCR"] == 2.1
    assert rep.wmh_ml == 0.5
    roi = read_catroi_xml(sub.roi)
    want = study["roi_ref"].query("subject == 'sub-02_T1w'")
    got = roi.merge(want, on=["region", "tissue"], suffixes=("", "_w"))
    assert len(got) == len(want) == 10
    assert np.array_equal(got["volume_ml"].to_numpy(), got["volume_ml_w"].to_numpy())
    # vbmkit's own folder uses the same prefixes; its json report is taken with report_json
    ours = find_outputs(study["ours"], report_json=True)
    assert ours["sub-02_T1w"].report.name == "sub-02_T1w.json"
    assert ours["sub-02_T1w"].layout == "standard"


def test_find_outputs_not_a_folder(tmp_path):
    with pytest.raises(ImageError, match="expected an output folder"):
        find_outputs(tmp_path / "missing")
