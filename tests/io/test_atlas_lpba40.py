"""The shipped LPBA40 atlas, label tables of other layouts, nearest-neighbour resampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from vbmkit.errors import ResourceError
from vbmkit.io.atlas import (
    hemisphere_of,
    load_atlas,
    read_label_table,
    region_at_mm,
    resample_labels,
)
from vbmkit.io.nifti import save_volume
from vbmkit.io.templates import output_grid
from vbmkit.space import Grid


def test_lpba40_lies_on_the_output_grid():
    atlas = load_atlas("lpba40")
    grid, stored = output_grid()
    assert atlas.grid.matches(grid)
    np.testing.assert_allclose(atlas.stored_affine, stored)
    assert atlas.labels.dtype == torch.int64 and tuple(atlas.labels.shape) == (113, 137, 113)
    present = set(torch.unique(atlas.labels).tolist()) - {0}
    assert present == set(atlas.table["region_id"].tolist())
    assert len(atlas.table) == 56
    assert list(atlas.table.columns[:4]) == ["region_id", "abbr", "name", "hemisphere"]
    hemi = atlas.table.set_index("abbr")["hemisphere"]
    assert hemi["lSupFroG"] == "left" and hemi["rHip"] == "right" and hemi["bBst"] == "both"
    flags = atlas.table.set_index("abbr")
    assert flags.loc["lCau", "vgm"] and not flags.loc["lCau", "vwm"] and not flags.loc["bBst", "vgm"]


def test_region_at_mm_left_and_right():
    atlas = load_atlas("lpba40")
    # Superior frontal gyrus near (-/+20, 30, 50) mm MNI, cerebellum near (0, -60, -40).
    assert region_at_mm(atlas, (-20, 30, 50)) == "lSupFroG"
    assert region_at_mm(atlas, (20, 30, 50)) == "rSupFroG"
    assert region_at_mm(atlas, (20, -65, -40)) == "bCBeL"
    assert region_at_mm(atlas, (0, 0, 500)) == ""


@pytest.mark.realdata
def test_ids_and_abbreviations_equal_cat12(shared_data):
    cat = pd.read_csv(shared_data / "cat12_labels" / "lpba40.csv", sep=";")
    cat = cat[cat["ROIid"] != 0].sort_values("ROIid")
    table = load_atlas("lpba40").table
    assert len(cat) == 56
    assert table["region_id"].tolist() == cat["ROIid"].tolist()
    assert table["abbr"].tolist() == cat["ROIabbr"].str.strip().tolist()
    assert table["name"].tolist() == cat["ROIname"].str.strip().tolist()


def test_hemisphere_rules():
    assert hemisphere_of("lPut", "Left Putamen") == "left"
    assert hemisphere_of("TL hippocampus R", "TL hippocampus R") == "right"
    assert hemisphere_of("x", "Frontal lobe L") == "left"
    assert hemisphere_of("v", "17Networks_RH_Default_1") == "right"
    assert hemisphere_of("Vermis", "Cerebellar vermis") == ""


def test_other_table_layouts(tmp_path):
    # neuromorphometrics: leading unnamed index column and a Hemisphere column
    p = tmp_path / "nm.csv"
    p.write_text(";ROIid;ROIname;Vgm;Vwm;Vcsf;ROIcolor;Hemisphere\n"
                 "0;4;3rd Ventricle;0;0;1;0 204 0;both\n1;23;Right Accumbens Area;1;0;0;1 2 3;right\n")
    t = read_label_table(p)
    assert t["region_id"].tolist() == [4, 23]
    assert t["abbr"].tolist() == ["3rd Ventricle", "Right Accumbens Area"]  # no ROIabbr: the name
    assert t["hemisphere"].tolist() == ["both", "right"] and t["vcsf"].tolist() == [True, False]
    bad = tmp_path / "bad.csv"
    bad.write_text("id;name\n1;a\n")
    with pytest.raises(ResourceError, match="expected a 'region_id' or 'ROIid' column"):
        read_label_table(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("region_id,abbr,name,hemisphere\n3,a,A,left\n3,b,B,right\n")
    with pytest.raises(ResourceError, match=r"expected unique region ids; \[3\] repeat"):
        read_label_table(dup)


def test_wheel_atlas_resampled_onto_a_grid():
    grid, _ = output_grid()
    atlas = load_atlas("hammers", grid=grid)
    assert atlas.grid.matches(grid)
    assert len(atlas.table) > 60 and atlas.table["hemisphere"].isin(["left", "right", ""]).all()


def test_resample_labels_half_up_on_flipped_grid():
    src = Grid((4, 4, 4), np.diag([-1.0, 1.0, 1.0, 1.0]))
    labels = np.arange(64, dtype=np.int64).reshape(4, 4, 4)
    same = resample_labels(labels, src, src)
    np.testing.assert_array_equal(same, labels)
    # 2 mm target, same world origin: target i -> source 2i exactly, outside -> 0
    tgt = Grid((3, 2, 2), np.diag([-2.0, 2.0, 2.0, 1.0]))
    out = resample_labels(labels, src, tgt)
    assert out[1, 1, 1] == labels[2, 2, 2] and out[2, 0, 0] == 0
    # half-way target voxel (source coordinate 0.5) rounds up to index 1
    half = Grid((1, 1, 1), np.array([[-1, 0, 0, -0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    assert resample_labels(labels, src, half)[0, 0, 0] == labels[1, 0, 0]


def test_user_atlas_path_and_missing_table(tmp_path):
    labels = np.zeros((7, 8, 9))
    labels[2:4] = 3
    save_volume(tmp_path / "mine.nii.gz", labels, np.diag([2.0, 2.0, 2.0, 1.0]), dtype=np.uint8)
    with pytest.raises(ResourceError, match="found image .*mine.nii.gz but no label table"):
        load_atlas(str(tmp_path / "mine.nii.gz"))
    (tmp_path / "mine_labels.csv").write_text("region_id,abbr,name,hemisphere\n3,lX,Left X,left\n")
    atlas = load_atlas(str(tmp_path / "mine.nii.gz"))
    assert atlas.name == "mine" and int((atlas.labels == 3).sum()) == 2 * 8 * 9


def test_same_space_decisions():
    from vbmkit.errors import GridMismatchError
    from vbmkit.io.atlas import same_space

    atlas = load_atlas("lpba40")
    grid, _ = output_grid()
    assert same_space(grid, atlas) is True
    # CAT12-style 1 mm template-space output (deepmriprep's atlas grid): resampling is fine
    one_mm = Grid((161, 197, 161), np.array([[1.0, 0, 0, -80], [0, 1, 0, -116], [0, 0, 1, -72], [0, 0, 0, 1]]))
    assert same_space(one_mm, atlas) is False
    # a native-space image: 1 mm, 256 mm field of view
    native = Grid((256, 256, 176), np.array([[1.0, 0, 0, -128], [0, 1, 0, -128], [0, 0, 1, -88], [0, 0, 0, 1]]))
    with pytest.raises(GridMismatchError, match=r"(?s)mine.nii: expected a map in the atlas's template space.*"
                                                r"differs from the atlas grid's .* \(a native-space image\?\)"):
        same_space(native, atlas, source="mine.nii")
    small = Grid((40, 40, 40), np.diag([1.5, 1.5, 1.5, 1.0]))
    with pytest.raises(GridMismatchError, match="does not hold the atlas regions"):
        same_space(small, atlas, source="small.nii")
