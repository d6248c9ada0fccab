from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vbmkit.errors import ConfigError
from vbmkit.io.bids import T1Input, bids_t1_files, find_t1_inputs


def touch_nifti(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), path)
    return path


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "ds"
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text("{}")
    touch_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    touch_nifti(root / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii")
    touch_nifti(root / "sub-02" / "ses-b" / "anat" / "sub-02_ses-b_T1w.nii.gz")
    touch_nifti(root / "sub-02" / "ses-b" / "anat" / "sub-02_ses-b_T2w.nii.gz")  # not a T1
    touch_nifti(root / "derivatives" / "x" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    return root


def test_bids_folder_finds_sessions_and_skips_derivatives(bids):
    files = bids_t1_files(bids)
    assert [f.name for f in files] == ["sub-01_T1w.nii.gz", "sub-02_ses-a_T1w.nii", "sub-02_ses-b_T1w.nii.gz"]
    inputs = find_t1_inputs([bids])
    assert [t.name for t in inputs] == ["sub-01_T1w", "sub-02_ses-a_T1w", "sub-02_ses-b_T1w"]
    assert all(isinstance(t, T1Input) and t.path.is_absolute() for t in inputs)


def test_files_globs_and_plain_folders(tmp_path):
    a = touch_nifti(tmp_path / "in" / "a.nii.gz")
    touch_nifti(tmp_path / "in" / "b.nii")
    (tmp_path / "in" / "notes.txt").write_text("x")
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"abc")  # a file given by name is kept; it fails later, in errors.csv
    got = find_t1_inputs([str(tmp_path / "in" / "*.nii*"), a])  # a twice: kept once
    assert [t.name for t in got] == ["a", "b", "broken"]
    assert [t.name for t in find_t1_inputs([tmp_path / "in"])] == ["a", "b", "broken"]
    assert [t.name for t in find_t1_inputs([broken])] == ["broken"]


def test_errors_name_the_input(tmp_path):
    touch_nifti(tmp_path / "x" / "s.nii.gz")
    touch_nifti(tmp_path / "y" / "s.nii")
    with pytest.raises(ConfigError, match=r"expected distinct file names .* both called 's'"):
        find_t1_inputs([tmp_path / "x" / "s.nii.gz", tmp_path / "y" / "s.nii"])
    with pytest.raises(ConfigError, match=r"input '.*missing.nii': expected an existing file, folder or glob"):
        find_t1_inputs([tmp_path / "missing.nii"])
    with pytest.raises(ConfigError, match=r"input glob '.*\*.mgz': expected it to match image files; it matches none"):
        find_t1_inputs([str(tmp_path / "*.mgz")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"input folder .*empty: expected NIfTI images"):
        find_t1_inputs([tmp_path / "empty"])
    (tmp_path / "emptybids" / "sub-01").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"expected BIDS T1 images"):
        find_t1_inputs([tmp_path / "emptybids"])
    with pytest.raises(ConfigError, match="expected at least one T1 file"):
        find_t1_inputs([])


@pytest.mark.realdata
def test_ds002748_has_twenty_t1(shared_data):
    inputs = find_t1_inputs([shared_data / "ds002748"])
    assert len(inputs) == 20 and inputs[0].name == "sub-01_T1w"
