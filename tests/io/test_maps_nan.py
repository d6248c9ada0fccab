"""NaN means 'no data' in input maps (load_map, load_maps), truncated files, subject-map checks."""

from __future__ import annotations

import re
import warnings

import nibabel as nib
import numpy as np
import pytest

from vbmkit.errors import ImageError
from vbmkit.io import maps as maps_module
from vbmkit.io.maps import load_maps
from vbmkit.io.nifti import load_map, load_volume

SHAPE = (7, 8, 9)
AFFINE = np.array([[-1.5, 0, 0, 10.0], [0, 2.0, 0, -20.0], [0, 0, 1.0, -5.0], [0, 0, 0, 1.0]])  # LAS


def _save(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), AFFINE), str(path))
    return path


def _study(tmp_path, n=6, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [(0.5 + 0.05 * rng.standard_normal(SHAPE)).astype(np.float32) for _ in range(n)]
    return arrays, [_save(tmp_path / f"m{i}.nii.gz", a) for i, a in enumerate(arrays)]


def test_load_map_keeps_nan_and_warns_once(tmp_path):
    data = np.ones(SHAPE, np.float32)
    data[0, :, :] = np.nan  # stored x = 0 is RAS x = 6 (LAS on disk)
    p = _save(tmp_path / "mwc1a.nii", data)
    with pytest.warns(UserWarning, match=r"mwc1a.nii: 72 NaN voxels of 504 read as 'no data'") as record:
        vol = load_map(p)
    assert len(record) == 1
    assert np.isnan(vol.data.numpy()[6]).all() and np.isfinite(vol.data.numpy()[:6]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_map(p, warn=False)
    with pytest.raises(ImageError, match=r"mwc1a.nii: expected finite voxel values; found 72 NaN/Inf"):
        load_volume(p)  # outputs and masks keep the strict rule


def test_load_map_refuses_inf_and_all_nan(tmp_path):
    data = np.ones(SHAPE, np.float32)
    data[1, 1, 1] = -np.inf
    with pytest.raises(ImageError, match=r"inf.nii: expected finite voxel values or NaN \(no data\); found 1 Inf"):
        load_map(_save(tmp_path / "inf.nii", data))
    with pytest.raises(ImageError, match=r"nan.nii: expected some finite voxel values; all 504 voxels are NaN"):
        load_map(_save(tmp_path / "nan.nii", np.full(SHAPE, np.nan)))


def test_truncated_gzip_names_the_file(tmp_path):
    p = _save(tmp_path / "cut.nii.gz", np.random.default_rng(0).random(SHAPE))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) * 2 // 3])
    # LAS on disk: reorienting to RAS reads the data, which end early
    with pytest.raises(ImageError, match=r"cut.nii.gz: expected a complete gzip-compressed NIfTI; the data are "
                                         r"truncated or corrupt \(EOFError: Compressed file ended"):
        load_volume(p)
    with pytest.raises(ImageError, match=r"cut.nii.gz: expected a complete gzip-compressed NIfTI"):
        load_volume(p, canonical=False)


@pytest.mark.parametrize("two_pass", [False, True])
def test_nan_voxels_fail_the_mean_mask_rule(tmp_path, monkeypatch, two_pass):
    if two_pass:  # the large-study path: mean map first, then a second read of each file
        monkeypatch.setattr(maps_module, "_ONE_PASS_BYTES", 0)
    arrays, paths = _study(tmp_path)
    arrays[1][:, :, 8] = np.nan
    arrays[3][0, 0, :] = np.nan
    _save(paths[1], arrays[1])
    _save(paths[3], arrays[3])
    with pytest.warns(UserWarning) as record:
        maps = load_maps(paths)
    messages = [str(w.message) for w in record]
    assert sum("m1.nii.gz: 56 NaN voxels of 504" in m for m in messages) == 1
    assert sum("m3.nii.gz: 9 NaN voxels of 504" in m for m in messages) == 1
    assert sum("mask: 64 of 504 voxels are NaN" in m for m in messages) == 1  # 56 + 9 - 1 shared
    ras = np.stack([a[::-1] for a in arrays])
    expected = np.isfinite(ras).all(0) & (np.nan_to_num(ras).mean(0) > 0.1)
    np.testing.assert_array_equal(maps.mask, expected)
    assert maps.data.shape == (6, 504 - 64) and bool(np.isfinite(maps.data.numpy()).all())
    np.testing.assert_array_equal(maps.data.numpy(), ras[:, expected])


def test_explicit_mask_drops_nan_and_refuses_a_map_without_data_there(tmp_path):
    arrays, paths = _study(tmp_path)
    mask = np.zeros(SHAPE, bool)
    mask[2:5, 2:5, 2:5] = True  # RAS = stored with x flipped: symmetric in x, so the same voxels
    arrays[2][2, 2, 2] = np.nan
    _save(paths[2], arrays[2])
    with pytest.warns(UserWarning, match=r"mask: 1 of 27 voxels are NaN"):
        maps = load_maps(paths, mask=mask)
    assert maps.data.shape == (6, 26) and maps.mask.sum() == 26
    arrays[4][2:5, 2:5, 2:5] = np.nan
    _save(paths[4], arrays[4])
    with pytest.raises(ImageError, match=r"m4.nii.gz: expected data inside the mask; all 27 mask voxels are NaN"):
        load_maps(paths, mask=mask)


@pytest.mark.parametrize(("value", "match"), [
    (0.0, r"m2.nii.gz: expected a tissue map with non-zero values inside the mask; all 504 voxels there are 0"),
    (0.7, r"m2.nii.gz: expected values that vary inside the mask; all 504 voxels there are 0.7 \(a constant"),
])
def test_empty_and_constant_maps_are_refused(tmp_path, value, match):
    arrays, paths = _study(tmp_path)
    _save(paths[2], np.full(SHAPE, value))
    with pytest.raises(ImageError, match=match):
        load_maps(paths)


def test_near_empty_map_is_refused_and_the_rule_can_be_skipped(tmp_path):
    arrays, paths = _study(tmp_path)
    sparse = np.zeros(SHAPE, np.float32)
    sparse[0, 0, :5] = 0.9  # 5 of 504 = 0.99 % non-zero
    _save(paths[0], sparse)
    with pytest.raises(ImageError, match=r"m0.nii.gz: expected non-zero values in at least 1 % of the 504 voxels "
                                         r"inside the mask; only 5 \(0.99 %\) are non-zero"):
        load_maps(paths, mask_threshold=0.0)
    sparse[0, 0, :6] = 0.9  # 6 of 504 = 1.19 %: accepted (its mean is an outlier: a warning)
    _save(paths[0], sparse)
    with pytest.warns(UserWarning, match=r"m0.nii.gz: mean inside the mask 0.01071 lies far"):
        assert load_maps(paths, mask_threshold=0.0).data.shape == (6, 504)
    _save(paths[0], np.zeros(SHAPE))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no check, so no outlier warning either
        assert load_maps(paths, check_subjects=False).data.shape[0] == 6


def test_outlying_mean_warns_with_its_robust_z(tmp_path):
    arrays, paths = _study(tmp_path)
    arrays[5] = 2.0 * arrays[5]
    _save(paths[5], arrays[5])
    means = np.array([a.astype(np.float64).mean() for a in arrays])  # the mask is every voxel (mean ~0.5)
    med = np.median(means)
    z = (means - med) / (1.4826 * np.median(np.abs(means - med)))
    assert abs(z[5]) > 5 and np.all(np.abs(z[:5]) < 5)
    expected = f"m5.nii.gz: mean inside the mask {means[5]:.4g} lies far from the other maps' (median {med:.4g}; " \
               f"robust z {z[5]:+.1f}, |z| > 5)"
    with pytest.warns(UserWarning, match=re.escape(expected)) as record:
        load_maps(paths)
    assert sum("robust z" in str(w.message) for w in record) == 1
