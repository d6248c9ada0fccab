"""CAT12 XML written by vbmkit reads back through vbmkit's CAT12 readers to the same numbers,
with the element paths DESIGN.md names; native ROI volumes on a phantom with a known answer."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import torch

from vbmkit.errors import RoiTableError
from vbmkit.io.atlas import load_atlas
from vbmkit.io.cat12 import Cat12Error, find_outputs, read_cat12_report
from vbmkit.io.cat12_write import write_cat12_report, write_catroi_xml
from vbmkit.io.catroi import read_catroi_xml, subject_tiv_ml
from vbmkit.io.templates import output_grid
from vbmkit.workflows.preprocess.cat12_outputs import native_roi_volumes, write_cat12_files

#: The element paths DESIGN.md ("CAT12 conventions") names, below the root <S>.
DESIGN_REPORT_PATHS = {"subjectmeasures/vol_TIV", "subjectmeasures/vol_abs_CGW", "subjectmeasures/vol_rel_CGW",
                       "qualityratings/NCR", "qualityratings/ICR", "qualityratings/res_RMS", "qualityratings/IQR"}
DESIGN_ROI_PATHS = {"{a}/ids", "{a}/names/item", "{a}/data/Vgm", "{a}/data/Vwm"}


def _paths(el: ET.Element, prefix: str = "") -> set[str]:
    out = set()
    for child in el:
        path = f"{prefix}{child.tag}"
        out.add(path)
        out |= _paths(child, path + "/")
    return out


def _roi_long(rng) -> pd.DataFrame:
    rows = []
    for atlas, ids, names in (("lpba40", [21, 22, 161], ["lSupFroG", "rSupFroG", "bCBeL"]),
                              ("hammers", [1, 2], ["TL hippocampus R", "TL hippocampus L"])):
        for tissue in ("gm", "wm", "csf"):
            for rid, name in zip(ids, names, strict=True):
                rows.append({"subject": "sub-01_T1w", "atlas": atlas, "region_id": rid, "region": name,
                             "hemisphere": "", "tissue": tissue, "volume_ml": rng.uniform(0.1, 30)})
    return pd.DataFrame(rows)


def test_written_xml_reads_back_with_design_paths(tmp_path):
    rng = np.random.default_rng(0)
    roi = _roi_long(rng)
    sub = tmp_path / "sub-01_T1w"
    volumes = {"csf": 401.123456789, "gm": 702.987654321, "wm": 512.5, "tiv": 401.123456789 + 702.987654321 + 512.5}
    ratings = {"NCR": 2.25, "ICR": 1.75, "res_RMS": 2.0, "IQR": 2.1}
    write_cat12_files(sub / "report" / "cat_sub-01_T1w.xml", sub / "label" / "catROI_sub-01_T1w.xml",
                      name="sub-01_T1w", source="/data/sub-01_T1w.nii.gz", volumes_ml=volumes, roi=roi,
                      ratings=ratings)
    rep = read_cat12_report(sub / "report" / "cat_sub-01_T1w.xml")
    assert rep.version == "new"
    assert rep.tiv_ml == pytest.approx(volumes["tiv"], abs=1e-6)
    assert (rep.csf_ml, rep.gm_ml, rep.wm_ml) == pytest.approx((volumes["csf"], volumes["gm"], volumes["wm"]), abs=1e-6)
    assert rep.rel_cgw[:3] == pytest.approx([volumes[t] / volumes["tiv"] for t in ("csf", "gm", "wm")], abs=1e-12)
    assert rep.ratings == ratings
    # a CAT12 script's TIV lookup finds it (no vbmkit JSON beside it)
    assert subject_tiv_ml(sub / "mri" / "mwp1sub-01_T1w.nii", "sub-01_T1w") == pytest.approx(volumes["tiv"], abs=1e-6)
    back = read_catroi_xml(sub / "label" / "catROI_sub-01_T1w.xml")
    merged = roi.merge(back, on=["atlas", "region_id", "tissue"], suffixes=("", "_back"))
    assert len(merged) == len(roi) == len(back)
    np.testing.assert_allclose(merged["volume_ml_back"], merged["volume_ml"], rtol=0, atol=1e-6)
    assert (merged["region"] == merged["region_back"]).all() and set(back["subject"]) == {"sub-01_T1w"}
    found = find_outputs(tmp_path)["sub-01_T1w"]
    assert found.report.name == "cat_sub-01_T1w.xml" and found.roi.name == "catROI_sub-01_T1w.xml"
    # element paths: everything DESIGN.md names is there
    report_paths = _paths(ET.parse(sub / "report" / "cat_sub-01_T1w.xml").getroot())
    assert DESIGN_REPORT_PATHS <= report_paths
    roi_paths = _paths(ET.parse(sub / "label" / "catROI_sub-01_T1w.xml").getroot())
    for atlas in ("lpba40", "hammers"):
        assert {p.format(a=atlas) for p in DESIGN_ROI_PATHS} | {f"{atlas}/data/Vcsf"} <= roi_paths
    assert {p.split("/")[0] for p in roi_paths} == {"lpba40", "hammers"}


def test_writer_errors(tmp_path):
    with pytest.raises(Cat12Error, match="expected a positive number of mL; got 0"):
        write_cat12_report(tmp_path / "cat_x.xml", name="x", tiv_ml=0, vol_abs_cgw=[1, 2, 3])
    with pytest.raises(Cat12Error, match="expected 'new' or 'old'; got 'v3'"):
        write_cat12_report(tmp_path / "cat_x.xml", name="x", tiv_ml=1.0, vol_abs_cgw=[1], version="v3")
    two = pd.DataFrame({"subject": ["a", "b"], "atlas": "x", "region_id": [1, 1], "region": "r",
                        "hemisphere": "", "tissue": "gm", "volume_ml": 1.0})
    with pytest.raises(RoiTableError, match="expected rows of one subject"):
        write_catroi_xml(tmp_path / "catROI_x.xml", two)
    bad = two.iloc[:1].assign(atlas="my atlas")
    with pytest.raises(RoiTableError, match="expected a name usable as an XML element"):
        write_catroi_xml(tmp_path / "catROI_x.xml", bad)


def test_native_roi_volumes_identity_map_equals_direct_sums():
    """Template grid = native grid, identity deformation and affine: native labels are the
    atlas labels, so each region's volume is the plain sum of p1/p2/p3 over its voxels."""
    grid, _ = output_grid()
    gen = torch.Generator().manual_seed(1)
    maps = torch.zeros(4, *grid.shape)
    box = (slice(40, 60), slice(60, 75), slice(50, 70))  # a small block of tissue: a fast inversion
    maps[(slice(1, 4), *box)] = torch.rand(3, 20, 15, 20, generator=gen)
    ijk = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in grid.shape],
                                     indexing="ij"), dim=-1)
    roi = native_roi_volumes("s", maps, grid, ijk, grid, np.eye(4), "lpba40,hammers")
    assert set(roi["atlas"]) == {"lpba40", "hammers"} and set(roi["tissue"]) == {"gm", "wm", "csf"}
    for name in ("lpba40", "hammers"):
        labels = load_atlas(name).labels
        got = roi[roi["atlas"] == name].set_index(["region_id", "tissue"])["volume_ml"]
        for rid in np.unique(labels[box].numpy()):
            if rid == 0:
                continue
            for k, tissue in enumerate(("gm", "wm", "csf"), start=1):
                want = float(maps[k][labels == int(rid)].double().sum()) * grid.voxel_volume_ml
                assert got[(int(rid), tissue)] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert roi["volume_ml"].sum() <= float(maps[1:].double().sum()) * grid.voxel_volume_ml + 1e-9
