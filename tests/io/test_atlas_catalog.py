"""The named atlases: each equals its table in the deepmriprep wheel, lies on the output grid,
and ``--atlas`` specifications expand as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vbmkit.errors import ConfigError
from vbmkit.io.atlas import load_atlas
from vbmkit.io.atlas_catalog import CAT12_DEFAULT, CATALOG, catalog_entry, resolve_atlas_names
from vbmkit.io.resources import deepmriprep_template_dir
from vbmkit.io.templates import output_grid


def _wheel_table(file: str) -> pd.DataFrame:
    raw = pd.read_csv(deepmriprep_template_dir() / f"{file}.csv", sep=";", dtype=str, keep_default_na=False)
    raw = raw.loc[:, [c for c in raw.columns if c and not c.startswith("Unnamed")]]
    raw["ROIid"] = raw["ROIid"].astype(int)
    return raw[raw["ROIid"] != 0].sort_values("ROIid").reset_index(drop=True)


def test_catalog_holds_every_label_image_of_the_wheel():
    images = {p.name[: -len(".nii.gz")] for p in deepmriprep_template_dir().glob("*.nii.gz")}
    assert images - {"Template_4_GS", "Template_05mm_bet"} == {e.file for e in CATALOG.values()}
    assert len(CATALOG) == 16 and all(e.source and e.licence for e in CATALOG.values())


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_ids_and_names_equal_the_wheel_csv_on_the_output_grid(name):
    atlas = load_atlas(name)
    ref = _wheel_table(CATALOG[name].file)
    assert atlas.name == name
    assert atlas.table["region_id"].tolist() == ref["ROIid"].tolist()
    assert atlas.table["name"].tolist() == ref["ROIname"].str.strip().tolist()
    if "ROIabbr" in ref.columns:
        assert atlas.table["abbr"].tolist() == ref["ROIabbr"].str.strip().tolist()
    grid, stored = output_grid()
    assert atlas.grid.matches(grid) and tuple(atlas.labels.shape) == (113, 137, 113)
    np.testing.assert_allclose(atlas.stored_affine, stored)
    # every region keeps at least one voxel at 1.5 mm (the smallest: 0.5 mm thalamic nuclei)
    assert set(atlas.region_ids.tolist()) <= set(np.unique(atlas.labels.numpy()).tolist())


def test_lpba40_is_unchanged_by_the_catalog():
    a, b = load_atlas("lpba40"), load_atlas("LPBA40")
    assert b.name == "lpba40" and np.array_equal(a.labels.numpy(), b.labels.numpy())
    assert len(a.table) == 56


def test_names_by_file_stem_and_case():
    assert catalog_entry("Schaefer2018_200Parcels_17Networks_order").name == "schaefer200"
    assert catalog_entry("Neuromorphometrics").name == "neuromorphometrics"
    assert catalog_entry("nope") is None


def test_resolve_atlas_names():
    assert resolve_atlas_names("lpba40") == ["lpba40"]
    assert resolve_atlas_names("lpba40, neuromorphometrics,lpba40") == ["lpba40", "neuromorphometrics"]
    assert resolve_atlas_names("cat12") == list(CAT12_DEFAULT) == ["neuromorphometrics", "lpba40", "cobra", "hammers"]
    assert resolve_atlas_names("all") == list(CATALOG)
    assert resolve_atlas_names(["suit", "cat12"]) == ["suit", *CAT12_DEFAULT]
    assert resolve_atlas_names("/x/mine.nii.gz") == ["/x/mine.nii.gz"]
    with pytest.raises(ConfigError, match=r"expected one of .*'all', 'cat12'.*got 'lpba'"):
        resolve_atlas_names("lpba")
    with pytest.raises(ConfigError, match="expected a name, several separated by commas"):
        resolve_atlas_names(" , ")
