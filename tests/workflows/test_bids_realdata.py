"""The BIDS-derivatives output of ``vbmkit run`` on the 20 ds002748 subjects passes the structure check.

The run takes about 40 minutes on two cores, more than the test suite may, so the test checks
the output folder of ``vbmkit run benchmarks/ds002748_before.yaml`` (``preprocess.layout: bids``)
when it is there (``out/ds002748_before/preprocess``, or the folder named by
``VBMKIT_BIDS_OUTPUT``) and says how to make it when it is not. The same check runs on a
phantom's bids-layout output in every test run (``test_preprocess_derivatives.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA
from vbmkit.io.bids_write import ENTITY_ORDER, check_derivative_structure

OUTPUT = Path(os.environ.get("VBMKIT_BIDS_OUTPUT", REPO / "out" / "ds002748_before" / "preprocess"))


@pytest.mark.realdata
def test_twenty_subject_bids_output_is_a_valid_derivative_dataset():
    if not (OUTPUT / "dataset_description.json").is_file():
        pytest.skip(f"{OUTPUT} is absent: make it with `vbmkit run benchmarks/ds002748_before.yaml` (about 40 min)")
    assert check_derivative_structure(OUTPUT) == []
    desc = json.loads((OUTPUT / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "vbmkit"
    assert desc["SourceDatasets"] and "ds002748" in desc["SourceDatasets"][0]["URL"]
    raw = sorted(p.name for p in (SHARED_DATA / "ds002748").glob("sub-*") if p.is_dir())
    subjects = sorted(p.name for p in OUTPUT.glob("sub-*") if p.is_dir())
    assert subjects == raw and len(subjects) == 20
    for sub in subjects:
        maps = sorted((OUTPUT / sub / "anat").glob("*.nii.gz"))
        assert {m.name.split("_", 1)[1] for m in maps} >= {
            "space-MNI152NLin2009cAsym_label-GM_desc-modulated_probseg.nii.gz",
            "space-MNI152NLin2009cAsym_label-GM_desc-s6modulated_probseg.nii.gz",
            "label-GM_probseg.nii.gz", "desc-p0_dseg.nii.gz"}
        for m in maps:  # entities in BIDS order, each with its sidecar's required fields
            keys = [part.split("-")[0] for part in m.name.split("_")[:-1]]
            assert keys == sorted(keys, key=ENTITY_ORDER.index)
            sidecar = json.loads(m.with_name(m.name.replace(".nii.gz", ".json")).read_text())
            assert {"Sources", "SettingsHash"} <= set(sidecar)
