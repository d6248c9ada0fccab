"""BIDS-derivatives names, dataset description, sidecars and the structure check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vbmkit.config import PreprocessConfig
from vbmkit.errors import ConfigError
from vbmkit.io.bids_write import (
    ENTITY_ORDER,
    bids_entities,
    bids_map_kind,
    bids_name,
    check_derivative_structure,
    sidecar_path,
    source_uri,
    write_dataset_description,
    write_sidecar,
)
from vbmkit.io.map_files import find_maps
from vbmkit.io.nifti import image_stem, save_volume
from vbmkit.workflows.preprocess.naming import (
    bids_paths,
    claimed_entries,
    output_paths,
    qc_image_path,
)


def test_entities_from_input_names():
    assert bids_entities("sub-01_T1w") == {"sub": "01"}
    assert bids_entities("sub-01_ses-2_acq-mprage_run-1_T1w") == {"sub": "01", "ses": "2", "acq": "mprage", "run": "1"}
    assert bids_entities("IXI002-Guys_T1") == {"sub": "IXI002GuysT1"}
    with pytest.raises(ConfigError, match="expected letters or digits to form a BIDS subject label"):
        bids_entities("___")


def test_names_follow_entity_order():
    name = bids_name({"desc": "modulated", "label": "GM", "space": "MNI152NLin2009cAsym", "sub": "01", "ses": "a"},
                     "probseg")
    assert name == "sub-01_ses-a_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz"
    with pytest.raises(ConfigError, match=r"expected some of .*; got \['echo'\]"):
        bids_name({"sub": "01", "echo": "1"}, "T1w")


def test_preprocess_paths_in_the_bids_layout(tmp_path):
    settings = PreprocessConfig(layout="bids", fwhm=[6.0, 4.5], save_deformation=True)
    paths = bids_paths(tmp_path, "sub-07_ses-2_T1w", settings)
    assert paths == output_paths(tmp_path, "sub-07_ses-2_T1w", settings)
    anat = tmp_path / "sub-07" / "ses-2" / "anat"
    assert paths["mwp1"] == anat / "sub-07_ses-2_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz"
    assert paths["s4.5mwp2"] == anat / "sub-07_ses-2_space-MNI152NLin2009cAsym_label-WM_desc-s4p5modulated_probseg.nii.gz"
    assert paths["p3"] == anat / "sub-07_ses-2_label-CSF_probseg.nii.gz"
    assert paths["p0"] == anat / "sub-07_ses-2_desc-p0_dseg.nii.gz"
    assert paths["y"] == anat / "sub-07_ses-2_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.nii.gz"
    assert paths["report"] == tmp_path / "sub-07" / "ses-2" / "report" / "sub-07_ses-2_T1w.json"
    assert qc_image_path(tmp_path, "sub-07_ses-2_T1w", settings).parent == paths["report"].parent
    assert claimed_entries(["sub-07_ses-2_T1w", "sub-07_ses-3_T1w"], settings) == \
        ["sub-07/", "dataset_description.json", ".bidsignore"]
    cat12 = PreprocessConfig()
    assert output_paths(tmp_path, "sub-07_T1w", cat12)["mwp1"] == tmp_path / "sub-07_T1w" / "mri" / "mwp1sub-07_T1w.nii.gz"
    assert claimed_entries(["sub-07_T1w"], cat12)[0] == "sub-07_T1w/"


def test_bids_map_names_read_back_as_cat12_kinds(tmp_path):
    settings = PreprocessConfig(layout="bids", fwhm=[6.0, 4.5], save_deformation=True)
    paths = bids_paths(tmp_path, "sub-07_ses-2_T1w", settings)
    kinds = {key: bids_map_kind(image_stem(path)) for key, path in paths.items()}
    for key in ("p0", "p1", "p2", "p3", "mwp1", "mwp2", "s6mwp1", "s6mwp2", "s4.5mwp1", "s4.5mwp2"):
        assert kinds[key] == ("sub-07_ses-2", key)
    assert kinds["y"] is None and kinds["report"] is None
    assert bids_map_kind("s6mwp1sub-07_T1w") is None
    assert bids_map_kind("sub-07_label-GM_desc-other_probseg") is None
    for key in ("s6mwp1", "mwp1", "s6mwp2"):
        save_volume(paths[key], np.zeros((2, 2, 2)), np.eye(4))
    assert find_maps([tmp_path], kind="s6mwp1") == [paths["s6mwp1"]]
    assert find_maps([tmp_path], kind="mwp1") == [paths["mwp1"]]


def _dataset(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub-01" / "anat").mkdir(parents=True)
    (raw / "dataset_description.json").write_text(json.dumps({"Name": "ds-test", "BIDSVersion": "1.8.0",
                                                              "DatasetDOI": "doi:10.1/x"}))
    t1 = raw / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    save_volume(t1, np.zeros((4, 5, 6)), np.eye(4))
    out = tmp_path / "derivatives" / "vbmkit"
    image = out / "sub-01" / "anat" / "sub-01_space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz"
    save_volume(image, np.zeros((4, 5, 6)), np.eye(4))
    return t1, out, image


def test_dataset_description_sidecars_and_check(tmp_path):
    t1, out, image = _dataset(tmp_path)
    write_dataset_description(out, version="9.9", source=t1, settings_hash="abc")
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0] == {
        "Name": "vbmkit", "Version": "9.9", "Description": desc["GeneratedBy"][0]["Description"],
        "CodeURL": "https://pypi.org/project/vbmkit/"}
    assert desc["SourceDatasets"][0]["DOI"] == "doi:10.1/x" and desc["SourceDatasets"][0]["Name"] == "ds-test"
    assert source_uri(t1) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert (out / ".bidsignore").is_file()
    assert check_derivative_structure(out) == [f"{image.relative_to(out)}: no JSON sidecar"]
    write_sidecar(image, {"Sources": [source_uri(t1)], "Space": "MNI152NLin2009cAsym"})
    assert sidecar_path(image).name.endswith("_probseg.json")
    assert check_derivative_structure(out) == []


def test_structure_check_finds_bad_names_and_descriptions(tmp_path):
    t1, out, image = _dataset(tmp_path)
    write_dataset_description(out, version="9.9", source=t1)
    write_sidecar(image, {})
    bad = out / "sub-01" / "anat" / "sub-01_label-GM_space-MNI152NLin2009cAsym_probseg.nii.gz"
    save_volume(bad, np.zeros((2, 2, 2)), np.eye(4))
    write_sidecar(bad, {})
    wrong_sub = out / "sub-01" / "anat" / "sub-02_label-GM_probseg.nii.gz"
    save_volume(wrong_sub, np.zeros((2, 2, 2)), np.eye(4))
    problems = check_derivative_structure(out)
    assert any("not in BIDS order" in p and "label" in p for p in problems)
    assert any("sub-01 of its folder missing" in p for p in problems)
    assert any("sub-02_label-GM_probseg.nii.gz: no JSON sidecar" in p for p in problems)
    (out / "dataset_description.json").write_text(json.dumps({"Name": "x", "DatasetType": "raw"}))
    problems = check_derivative_structure(out)
    assert "dataset_description.json: key 'BIDSVersion' missing" in problems
    assert any("DatasetType expected 'derivative'; got 'raw'" in p for p in problems)
    assert ENTITY_ORDER.index("space") < ENTITY_ORDER.index("label") < ENTITY_ORDER.index("desc")
