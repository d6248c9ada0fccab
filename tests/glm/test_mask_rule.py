"""Mask rules: the mean map above the threshold (default) or every image above it (SPM/CAT12)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydantic
import pytest
from typer.testing import CliRunner

from vbmkit.cli.main import app
from vbmkit.config import GlmConfig
from vbmkit.errors import ConfigError, ImageError
from vbmkit.io import maps as maps_module
from vbmkit.io.maps import load_maps

SHAPE = (7, 8, 9)
# flipped and anisotropic, as the other map tests
AFFINE = np.array([[-2.0, 0, 0, 6.0], [0, 1.5, 0, -6.0], [0, 0, 1.0, -4.0], [0, 0, 0, 1.0]])


def _write(tmp_path, values_per_image):
    paths = []
    for k, vol in enumerate(values_per_image):
        p = tmp_path / f"s6mwp1sub-{k + 1:02d}.nii.gz"
        nib.save(nib.Nifti1Image(vol.astype(np.float32), AFFINE), str(p))
        paths.append(p)
    return paths


@pytest.fixture
def three_images(tmp_path):
    """Voxel block A: one image at 0.05, two at 0.5 (mean 0.35); block B: all 0.2 + a little variation."""
    rng = np.random.default_rng(0)
    vols = [np.zeros(SHAPE) for _ in range(3)]
    for k, v in enumerate(vols):
        v[1:3, 1:3, 1:3] = 0.05 if k == 0 else 0.5  # A
        v[4:6, 4:6, 4:7] = 0.2 + 0.01 * rng.random((2, 2, 3))  # B
    return _write(tmp_path, vols)


@pytest.mark.parametrize("two_pass", [False, True])
def test_mean_and_all_rules(three_images, monkeypatch, two_pass):
    if two_pass:
        monkeypatch.setattr(maps_module, "_ONE_PASS_BYTES", 0)
    mean = load_maps(three_images, mask_threshold=0.1, check_subjects=False).mask
    every = load_maps(three_images, mask_threshold=0.1, mask_rule="all", check_subjects=False).mask
    block_a = np.zeros(SHAPE, bool)
    block_a[1:3, 1:3, 1:3] = True
    block_b = np.zeros(SHAPE, bool)
    block_b[4:6, 4:6, 4:7] = True
    # nibabel's canonical (RAS) view flips x: compare against the flipped blocks
    np.testing.assert_array_equal(mean, (block_a | block_b)[::-1])
    np.testing.assert_array_equal(every, block_b[::-1])
    assert not (every & ~mean).any()  # 'all' never adds voxels


def test_all_rule_with_no_voxel_is_one_clear_error(three_images):
    with pytest.raises(ImageError, match="every one of the 3 images exceeds the threshold 0.3; none does"):
        load_maps(three_images, mask_threshold=0.3, mask_rule="all", check_subjects=False)


def test_unknown_rule_is_refused(three_images):
    with pytest.raises(ConfigError, match="mask_rule: expected 'mean' or 'all'; got 'median'"):
        load_maps(three_images, mask_rule="median")
    with pytest.raises(pydantic.ValidationError, match="mask_rule"):
        GlmConfig(formula="age", contrasts={"age": "age"}, mask_rule="median")
    assert GlmConfig(formula="age", contrasts={"age": "age"}).mask_rule == "all"  # SPM/CAT12 absolute threshold


def test_cli_flag_is_validated(tmp_path):
    res = CliRunner().invoke(app, ["glm", str(tmp_path / "x.nii.gz"), "--mask-rule", "median", "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and "mask-rule" in res.output and not (tmp_path / "o").exists()


def test_cli_all_rule_reaches_the_mask(tmp_path):
    import json

    import pandas as pd

    rng = np.random.default_rng(1)
    n = 12
    vols = [0.3 + 0.05 * rng.standard_normal(SHAPE) for _ in range(n)]
    vols[0][:2] = 0.05  # one subject below the threshold in two x-slices
    paths = _write(tmp_path, vols)
    pd.DataFrame({"participant_id": [f"sub-{k + 1:02d}" for k in range(n)], "age": np.arange(n) * 3.0 + 20}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["glm", *map(str, paths), "--covariates", str(tmp_path / "participants.tsv"),
                                   "--formula", "age", "--contrast", "age=age", "--subsamples", "0",
                                   "--mask-rule", "all", "--out", str(out), "-q", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "summary.json").read_text())["settings"]["mask_rule"] == "all"
    mask = np.asarray(nib.load(str(out / "mask.nii.gz")).dataobj) > 0
    want = np.ones(SHAPE, bool)
    want[:2] = False  # stored orientation: x as written
    np.testing.assert_array_equal(mask, want)
