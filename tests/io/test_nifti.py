import nibabel as nib
import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.io.nifti import image_stem, load_volume, save_volume
from vbmkit.io.templates import load_shooting_template, output_grid


def test_roundtrip_reorients_to_ras(tmp_path):
    data = np.arange(7 * 8 * 9, dtype=np.float32).reshape(7, 8, 9)
    aff = np.diag([-1.5, 2.0, 1.0, 1.0])  # LAS on disk
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "a.nii.gz")
    vol = load_volume(tmp_path / "a.nii.gz")
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(vol.data.numpy(), data[::-1])
    save_volume(tmp_path / "b.nii.gz", vol.data, vol.affine, orientation_of=aff)
    back = nib.load(tmp_path / "b.nii.gz")
    np.testing.assert_allclose(back.affine, aff)
    np.testing.assert_array_equal(back.get_fdata(), data)
    assert image_stem(tmp_path / "b.nii.gz") == "b"


def test_bad_images(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(ImageError, match="4d.nii: expected a 3-D image"):
        load_volume(tmp_path / "4d.nii")
    bad = np.ones((4, 4, 4), np.float32)
    bad[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(bad, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(ImageError, match="nan.nii: expected finite voxel values; found 1"):
        load_volume(tmp_path / "nan.nii")
    (tmp_path / "tiny.nii").write_bytes(b"abc")
    with pytest.raises(ImageError, match="only 3 bytes"):
        load_volume(tmp_path / "tiny.nii")
    with pytest.raises(ImageError, match="does not exist"):
        load_volume(tmp_path / "missing.nii")


def test_a_small_compressed_image_is_not_taken_for_a_truncated_one(tmp_path):
    # a constant 4 x 4 x 5 image gzips to under 100 bytes; it is a valid image all the same
    nib.save(nib.Nifti1Image(np.ones((4, 4, 5)), np.eye(4)), tmp_path / "ones.nii.gz")
    assert (tmp_path / "ones.nii.gz").stat().st_size < 348
    vol = load_volume(tmp_path / "ones.nii.gz")
    assert tuple(vol.data.shape) == (4, 4, 5) and float(vol.data.sum()) == 80.0
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "ones.nii.gz").read_bytes()[:20])
    with pytest.raises(ImageError, match="cut.nii.gz: expected a NIfTI image; the file has only 20 bytes"):
        load_volume(tmp_path / "cut.nii.gz")


def test_shooting_template_grid():
    t = load_shooting_template()
    assert tuple(t.data.shape) == (3, 113, 137, 113)
    assert t.data.dtype == torch.float32 and float(t.data.max()) <= 1.0
    grid, stored = output_grid()
    np.testing.assert_allclose(grid.voxel_size, [1.5, 1.5, 1.5])
    assert stored[0, 0] == pytest.approx(-1.5)
