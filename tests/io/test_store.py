"""The subject x voxel store equals the in-memory loader and records its sources."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest

from vbmkit.errors import ConfigError, ImageError
from vbmkit.io.maps import load_maps
from vbmkit.io.ownership import read_stamp
from vbmkit.io.store import open_store, write_store

SHAPE = (7, 8, 9)


@pytest.fixture
def maps(tmp_path):
    rng = np.random.default_rng(3)
    affine = np.diag([-2.0, 2.0, 2.5, 1.0])  # LAS on disk: the store is RAS like load_maps
    paths = []
    for i in range(11):
        data = 0.4 + 0.2 * rng.random(SHAPE)
        data[0] = 0.0  # a slab outside the mean-map mask
        p = tmp_path / f"s6mwp1sub-{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(p))
        paths.append(p)
    return paths


def test_store_equals_load_maps_in_blocks(maps, tmp_path):
    out = write_store(maps, tmp_path / "store", subject_chunk=4, voxel_chunk=50)
    store = open_store(out)
    ref = load_maps(maps, mask_threshold=0.1, check_subjects=False)
    assert store.shape == tuple(ref.data.shape) and np.array_equal(store.mask, ref.mask)
    got = np.concatenate([store.block(a, min(a + 37, store.shape[1])) for a in range(0, store.shape[1], 37)], axis=1)
    np.testing.assert_array_equal(got, ref.data.numpy())
    np.testing.assert_allclose(store.grid.affine, ref.grid.affine)
    assert store.subjects == [p.name.split(".")[0] for p in maps]
    assert store.sha256[3] == hashlib.sha256(maps[3].read_bytes()).hexdigest()
    assert read_stamp(out)["command"] == "stack"


def test_float16_halves_the_values_precision_not_the_layout(maps, tmp_path):
    store = open_store(write_store(maps, tmp_path / "s16", dtype="float16"))
    ref = load_maps(maps, mask_threshold=0.1, check_subjects=False).data.numpy()
    np.testing.assert_allclose(store.block(0, store.shape[1]), ref, rtol=1e-3)


def test_store_errors(maps, tmp_path):
    with pytest.raises(ConfigError, match="dtype: expected one of"):
        write_store(maps, tmp_path / "x", dtype="int8")
    with pytest.raises(ConfigError, match="expected 11 distinct IDs"):
        write_store(maps, tmp_path / "x", subjects=["a"] * 11)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="expected a new or empty folder, or one written by vbmkit stack"):
        write_store(maps, tmp_path / "mine")
    with pytest.raises(ImageError, match="expected a vbmkit store"):
        open_store(tmp_path / "mine")
