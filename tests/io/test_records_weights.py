import nibabel as nib
import numpy as np
import torch

from vbmkit.io.records import read_json, save_deformation, write_report, write_rows
from vbmkit.io.weights import deepmriprep_weights_missing, load_brain_extraction_models


def test_report_and_rows_roundtrip(tmp_path):
    write_report(tmp_path / "r" / "a.json", {"x": 1.5, "bad": float("nan"), "t": torch.tensor(2.0)})
    assert read_json(tmp_path / "r" / "a.json") == {"x": 1.5, "bad": None, "t": 2.0}
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "junk.json").write_text("{not json")
    assert read_json(tmp_path / "junk.json") is None
    write_rows(tmp_path / "t.csv", [{"name": "a", "v": 1.0 / 3}, {"name": "b", "v": None, "extra": 1}],
               ["name", "v"])
    assert (tmp_path / "t.csv").read_text() == "name,v\na,0.333333\nb,\n"
    write_rows(tmp_path / "e.csv", [], ["name", "path", "reason"])
    assert (tmp_path / "e.csv").read_text() == "name,path,reason\n"


def test_save_deformation_is_5d_in_stored_orientation(tmp_path):
    field = torch.arange(7 * 8 * 9 * 3, dtype=torch.float32).reshape(7, 8, 9, 3)
    ras = np.diag([1.5, 1.5, 1.5, 1.0])
    las = np.diag([-1.5, 1.5, 1.5, 1.0])
    las[0, 3] = 6 * 1.5  # the same grid stored with the first axis flipped
    save_deformation(tmp_path / "y_a.nii.gz", field, ras, orientation_of=las)
    img = nib.load(tmp_path / "y_a.nii.gz")
    assert img.shape == (7, 8, 9, 1, 3)
    np.testing.assert_allclose(img.affine, las)
    np.testing.assert_array_equal(np.asarray(img.dataobj)[::-1, :, :, 0, :], field.numpy())


def test_deepbet_weights_load_once_and_deepmriprep_report():
    nets = load_brain_extraction_models("cpu")
    assert nets is load_brain_extraction_models(torch.device("cpu"))  # cached per device
    out = nets.bbox_model(torch.zeros(1, 1, 32, 32, 32))  # a U-Net: sizes divisible by 16
    assert out.shape == (1, 2, 32, 32, 32)
    missing = deepmriprep_weights_missing()
    assert isinstance(missing, list) and all(name.endswith(".pt") for name in missing)
