"""Finding maps in output folders, matching them to IDs, loading them under a mask."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from vbmkit.errors import CovariateError, GridMismatchError, ImageError
from vbmkit.io.maps import check_grids, file_id, find_maps, load_maps, load_mask, match_ids, unmask

SHAPE = (7, 8, 9)
# Flipped (LAS) and anisotropic, like CAT12 outputs on a non-cubic grid.
AFFINE = np.array([[-1.5, 0, 0, 10.0], [0, 2.0, 0, -20.0], [0, 0, 1.0, -5.0], [0, 0, 0, 1.0]])


def _save(path, data=None, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(len(str(path))).random(SHAPE).astype(np.float32) if data is None else data
    nib.save(nib.Nifti1Image(np.asarray(arr, dtype=np.float32), affine), str(path))
    return path


def test_layouts_of_vbmkit_cat12_deepmriprep(tmp_path):
    # vbmkit / deepmriprep "cat": <out>/<name>/mri/<kind><name>.nii.gz, with other kinds beside
    for name in ("sub-01", "sub-02"):
        _save(tmp_path / "vb" / name / "mri" / f"s6mwp1{name}.nii.gz")
        _save(tmp_path / "vb" / name / "mri" / f"mwp1{name}.nii.gz")
        _save(tmp_path / "vb" / name / "mri" / f".s6mwp1{name}.tmp.nii.gz")  # half-written: ignored
    assert [p.name for p in find_maps([tmp_path / "vb"], kind="s6mwp1")] == ["s6mwp1sub-01.nii.gz", "s6mwp1sub-02.nii.gz"]
    assert len(find_maps([tmp_path / "vb"], kind="mwp1")) == 2
    # CAT12 BIDS-flat: sub-X/ses-Y/anat/mwp1sub-X_ses-Y_T1w.nii
    _save(tmp_path / "cat" / "sub-03" / "ses-1" / "anat" / "mwp1sub-03_ses-1_T1w.nii")
    # deepmriprep mod: <dir>/<kind>/<name>.nii.gz, and BIDS derivatives sub-X_<kind>.nii.gz
    _save(tmp_path / "dmp" / "mwp1" / "sub-04.nii.gz")
    _save(tmp_path / "bids" / "sub-05" / "anat" / "sub-05_mwp1.nii.gz")
    found = find_maps([tmp_path / "cat", tmp_path / "dmp", tmp_path / "bids"], kind="mwp1")
    assert [p.name for p in found] == ["sub-05_mwp1.nii.gz", "mwp1sub-03_ses-1_T1w.nii", "sub-04.nii.gz"]  # path order


def test_files_and_globs(tmp_path):
    a = _save(tmp_path / "x" / "a01.nii.gz")
    _save(tmp_path / "x" / "a02.nii.gz")
    assert find_maps([str(tmp_path / "x" / "a*.nii.gz")]) == sorted([a, tmp_path / "x" / "a02.nii.gz"])
    assert find_maps([a, a]) == [a]  # duplicates collapse
    with pytest.raises(ImageError, match="matches nothing"):
        find_maps([str(tmp_path / "x" / "b*.nii")])
    with pytest.raises(ImageError, match="does not exist"):
        find_maps([tmp_path / "nope.nii"])
    with pytest.raises(ImageError, match=r"expected s6mwp1\* maps"):
        find_maps([tmp_path / "x"], kind="s6mwp1")


def test_id_matching_longest_and_boundaries(tmp_path):
    ids = ["sub-01", "sub-010", "sub-1"]
    assert file_id(tmp_path / "s6mwp1sub-01_T1w.nii.gz", ids, kind="s6mwp1") == "sub-01"
    assert file_id(tmp_path / "s6mwp1sub-010_T1w.nii.gz", ids, kind="s6mwp1") == "sub-010"
    assert file_id(tmp_path / "s6mwp1sub-011.nii.gz", ids, kind="s6mwp1") is None  # not sub-01 / sub-1
    # numeric IDs: the kind prefix "s6mwp1" must not count as ID "1" or "6"
    assert file_id(tmp_path / "s6mwp1_0012.nii", ["1", "6", "0012"], kind="s6mwp1") == "0012"
    # the ID may only be in a folder name (CAT12 names like mri/mwp1T1.nii)
    assert file_id(tmp_path / "sub-01" / "mri" / "mwp1T1.nii", ids, kind="mwp1") == "sub-01"


def test_match_lists_both_sides_and_rejects_two_images_per_id(tmp_path):
    paths = [tmp_path / "mwp1sub-01.nii", tmp_path / "mwp1sub-02.nii", tmp_path / "mwp1sub-09.nii"]
    m = match_ids(paths, ["sub-02", "sub-01", "sub-03"], kind="mwp1")
    assert m.ids == ["sub-02", "sub-01"] and m.paths == [paths[1], paths[0]]
    assert m.images_without_row == [paths[2]] and m.rows_without_image == ["sub-03"]
    with pytest.raises(CovariateError, match=r"one image per ID; got two: .*mwp1sub-01.nii and .*sub-01_run-2"):
        match_ids([paths[0], tmp_path / "mwp1sub-01_run-2.nii"], ["sub-01"], kind="mwp1")


def test_grid_errors_name_both_files(tmp_path):
    a = _save(tmp_path / "a.nii.gz")
    b = _save(tmp_path / "b.nii.gz", affine=np.diag([1.5, 2.0, 1.0, 1.0]))
    with pytest.raises(GridMismatchError, match=r"a\.nii\.gz has shape \(7, 8, 9\)(.|\n)*b\.nii\.gz has shape"):
        check_grids([a, b])
    c = _save(tmp_path / "c.nii.gz", data=np.zeros((7, 8, 10)))
    with pytest.raises(GridMismatchError, match=r"c\.nii\.gz has shape \(7, 8, 10\)"):
        check_grids([a, c])
    d = _save(tmp_path / "d.nii.gz", data=np.zeros((*SHAPE, 2)))
    with pytest.raises(ImageError, match=r"d\.nii\.gz: expected a 3-D image"):
        check_grids([a, d])
    bad = np.ones(SHAPE, dtype=np.float32)
    bad[1, 2, 3] = np.inf  # NaN means 'no data' (tests/io/test_maps_nan.py); Inf stays an error
    e = _save(tmp_path / "e.nii.gz", data=bad)
    with pytest.raises(ImageError, match=r"e\.nii\.gz: expected finite voxel values or NaN \(no data\); found 1 Inf"):
        load_maps([a, e])


def test_load_maps_values_mask_and_unmask(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.random(SHAPE).astype(np.float32) for _ in range(3)]
    paths = [_save(tmp_path / f"m{i}.nii.gz", data=a) for i, a in enumerate(arrays)]
    maps = load_maps(paths, mask_threshold=0.5)
    # load_volume brings LAS storage to RAS: flip the first axis to compare with the arrays
    ras = [a[::-1] for a in arrays]
    expected_mask = np.mean(ras, axis=0) > 0.5
    np.testing.assert_array_equal(maps.mask, expected_mask)
    np.testing.assert_array_equal(maps.data.numpy(), np.stack([r[expected_mask] for r in ras]))
    np.testing.assert_allclose(maps.stored_affine, AFFINE)
    back = unmask(maps.data[0], maps.mask)
    np.testing.assert_array_equal(back[expected_mask], ras[0][expected_mask])
    assert np.all(back[~expected_mask] == 0)
    # explicit mask image; progress callback sees every file
    mask_path = _save(tmp_path / "mask.nii.gz", data=(arrays[0] > 0.3).astype(np.float32))
    mask = load_mask(mask_path, maps.grid, reference=paths[0])
    calls = []
    masked = load_maps(paths, mask=mask, progress=lambda d, t: calls.append((d, t)))
    assert masked.data.shape == (3, int((ras[0] > 0.3).sum())) and calls[-1] == (3, 3)
    with pytest.raises(ImageError, match="mean over 3 images exceeds the threshold 2"):
        load_maps(paths, mask_threshold=2.0)
    wrong = _save(tmp_path / "wrong_mask.nii.gz", data=np.ones((7, 8, 10)))
    with pytest.raises(GridMismatchError, match=r"mask .*wrong_mask"):
        load_mask(wrong, maps.grid, reference=paths[0])


def test_drop_constant_voxels_in_place(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.random(SHAPE).astype(np.float32) for _ in range(4)]
    for a in arrays:
        a[0, :, :] = 0.5  # a constant slab (stored index 0 = RAS index 6 after the LAS flip)
        a[3, 4, 5] = 0.7
    paths = [_save(tmp_path / f"m{i}.nii.gz", data=a) for i, a in enumerate(arrays)]
    full = load_maps(paths, mask_threshold=0.0)
    kept = load_maps(paths, mask_threshold=0.0, drop_constant=True)
    ras = np.stack([a[::-1] for a in arrays])
    expected = ras.max(0) > ras.min(0)
    assert full.data.shape[1] == int(np.prod(SHAPE)) and kept.data.shape[1] == int(expected.sum())
    np.testing.assert_array_equal(kept.mask, expected)
    assert not kept.mask[6].any() and not kept.mask[3, 4, 5]
    np.testing.assert_array_equal(kept.data.numpy(), ras[:, expected])
    with pytest.raises(ImageError, match="every voxel is constant"):
        load_maps(paths[:1], mask_threshold=0.0, drop_constant=True)
