"""``run_compare --spm``: SPM12 segmentations in SPM12's naming, mwc maps on the 2 mm 91 x 109 x 91 grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import stats

from tests.fixtures.foreign_writers import write_stat_map
from tests.workflows.compare_fixtures import (
    CAT_AFFINE,
    NATIVE_AFFINE,
    SPM_AFFINE,
    SPM_SHAPE,
    _resample_to,
    make_spm_study,
)
from vbmkit.config import GlmConfig
from vbmkit.io.nifti import save_volume
from vbmkit.workflows.compare import run_compare


def _labels(probs_csf_gm_wm: np.ndarray) -> np.ndarray:
    """Independent hard labelling: argmax over (background = 1 - sum, CSF, GM, WM)."""
    bg = np.clip(1 - probs_csf_gm_wm.sum(-1, keepdims=True), 0, None)
    return np.concatenate([bg, probs_csf_gm_wm], -1).argmax(-1)


def test_spm12_segmentations_compared_on_common_grid(tmp_path):
    study = make_spm_study(tmp_path, n=2)
    out = tmp_path / "out"
    m = run_compare(study["ours"], spm=study["spm"], out=out, report=False, device="cpu")
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["reference"]["kind"] == "spm" and on_disk["matched"] == ["sub-01_T1w", "sub-02_T1w"]
    vox_native = abs(np.linalg.det(NATIVE_AFFINE[:3, :3])) / 1000
    for name, t in study["truth"].items():
        s = m["subjects"][name]
        # Dice of c1/c2/c3 vs p1/p2/p3 after hard labelling (same native grid, x flipped on both)
        la, lb = _labels(t["probs"].astype(np.float64)), _labels(t["ref"].astype(np.float64))
        for c, tissue in ((1, "csf"), (2, "gm"), (3, "wm")):
            A, B = la == c, lb == c
            assert s[f"dice_{tissue}"] == pytest.approx(2 * (A & B).sum() / (A.sum() + B.sum()), abs=1e-6)
            pa, pb = t["probs"][..., c - 1].astype(np.float64), t["ref"][..., c - 1].astype(np.float64)
            assert s[f"prob_dice_{tissue}"] == pytest.approx(2 * (pa * pb).sum() / (pa.sum() + pb.sum()), abs=1e-6)
        assert s["c_resampled"] is False
        # r of mwp1 (1.5 mm) vs mwc1 (2 mm): ours resampled onto SPM's coarser grid. scipy's trilinear
        # interpolation in float64 vs vbmkit's grid_sample in float32: agree to ~1e-6.
        a = _resample_to(t["mwp1"].astype(np.float64), CAT_AFFINE, SPM_SHAPE, SPM_AFFINE)
        b = t["mwc1"].astype(np.float64)
        keep = (a + b) / 2 > 0.1
        assert s["r_mwp1"] == pytest.approx(stats.pearsonr(a[keep], b[keep])[0], abs=1e-5)
        assert s["mwp1_resampled"] is True
        assert 0.5 < s["r_mwp1"] < 0.999
        # GM / WM volumes: SPM12's from the sum of c1 / c2 times the voxel volume
        assert s["gm_spm_ml"] == pytest.approx(t["ref"][..., 1].astype(np.float64).sum() * vox_native, rel=1e-6)
        assert s["wm_spm_ml"] == pytest.approx(t["ref"][..., 2].astype(np.float64).sum() * vox_native, rel=1e-6)
        assert s["gm_ours_ml"] == pytest.approx(t["probs"][..., 1].astype(np.float64).sum() * vox_native, rel=1e-6)
    assert any("ROI volumes" in msg for msg in m["missing"])


def test_spm_t_maps_are_correlated_by_contrast_name(tmp_path):
    """With covariates, our median t-map is compared with SPM's spmT of the same contrast name."""
    from tests.workflows.compare_fixtures import TEMPLATE_AFFINE, TEMPLATE_SHAPE, make_study

    study = make_study(tmp_path, n=12)
    spm = tmp_path / "spm"
    # SPM's own result on our grid: positive where the fixture's GM decreases with age, plus noise
    rng = np.random.default_rng(0)
    t = np.zeros(TEMPLATE_SHAPE)
    t[3:6, 4:7, 4:8] = 5.0
    t = np.where(study["truth"]["mwp1"]["sub-01_T1w"][0] > 0, t + rng.normal(0, 1.0, t.shape), 0.0)
    write_stat_map(spm / "spmT_0001.nii", t, TEMPLATE_AFFINE, df=10, index=1, name="neg_age")
    save_volume(spm / "con_0001.nii", t, TEMPLATE_AFFINE)
    m = run_compare(study["ours"], spm=spm, out=tmp_path / "out", covariates=study["covariates"],
                    id_column="participant_id",
                    glm=GlmConfig(formula="age", contrasts={"neg_age": "-age"}, subsamples=10),
                    device="cpu", report=False)
    c = m["contrasts"]["neg_age"]
    ours_t = np.asarray(nib.load(str(tmp_path / "out" / "glm_ours" / "neg_age" / "t_median.nii.gz")).dataobj)
    mask = (np.asarray(nib.load(str(tmp_path / "out" / "glm_ours" / "mask.nii.gz")).dataobj) > 0) & (t != 0)
    assert c["r_median_t"] == pytest.approx(stats.pearsonr(ours_t[mask], t.astype(np.float32)[mask])[0], abs=1e-6)
    assert c["r_median_t"] > 0.3 and c["same_draws"] is None  # one GLM run only: SPM's map is given
    assert c["max_abs_t_spm"] == pytest.approx(np.abs(t.astype(np.float32)).max(), abs=1e-5)
    assert c["threshold_reference"] == pytest.approx(stats.t.isf(0.001, 10), rel=1e-6)


def _smooth_masked(x: np.ndarray, fwhm_mm: float, voxel_mm: float) -> np.ndarray:
    """Independent NaN-aware smoothing: NaN -> 0, scipy's Gaussian (radius ceil(4 sigma), zeros
    outside the grid, as vbmkit's kernel), NaN again where the input was."""
    import math

    from scipy import ndimage

    sigma = fwhm_mm / (2 * math.sqrt(2 * math.log(2))) / voxel_mm
    valid = np.isfinite(x)
    out = ndimage.gaussian_filter(np.where(valid, x, 0.0), sigma, mode="constant", cval=0.0, truncate=4.0,
                                  radius=math.ceil(4 * sigma))
    return np.where(valid, out, np.nan)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    keep &= (np.where(keep, a, 0) + np.where(keep, b, 0)) / 2 > 0.1
    return float(stats.pearsonr(a[keep], b[keep])[0])


@pytest.mark.parametrize("grid", ["oldseg", "normalise"])
def test_nan_outside_the_field_of_view_and_smoothed_r(tmp_path, grid):
    """SPM12's mwc1/mwc2 with NaN outside a cropped field of view (as spm_write_sn writes them) on
    the OldSeg (91 x 109 x 91) or Normalise (79 x 95 x 78) grid: no error, one warning per file
    naming its NaN count, NaN voxels left out of r, and r of the smoothed maps (computed from the
    unsmoothed maps on the common grid) equal to scipy's."""
    study = make_spm_study(tmp_path, n=2, nan_outside=True, grid=grid)
    assert study["n_nan"] > 1000
    with pytest.warns(UserWarning) as record:
        m = run_compare(study["ours"], spm=study["spm"], out=tmp_path / "out", report=True, device="cpu")
    messages = [str(w.message) for w in record]
    for name in study["truth"]:
        for k in ("mwc1", "mwc2"):
            hits = [msg for msg in messages if f"{k}{name}.nii: {study['n_nan']} NaN voxels" in msg]
            assert len(hits) == 1, messages  # once per file, although each is read for raw and smoothed r
    for name, t in study["truth"].items():
        s = m["subjects"][name]
        a = _resample_to(t["mwp1"].astype(np.float64), CAT_AFFINE, study["shape"], study["affine"])
        b = t["mwc1"].astype(np.float64)
        assert s["r_mwp1"] == pytest.approx(_r(a, b), abs=1e-6)
        # the voxels NaN in mwc1 are not in the mask
        keep = np.isfinite(b) & ((a + np.nan_to_num(b)) / 2 > 0.1)
        assert s["n_voxels_mwp1"] == int(keep.sum())
        sa, sb = _smooth_masked(a, 6.0, 2.0), _smooth_masked(b, 6.0, 2.0)
        assert s["r_s6mwp1"] == pytest.approx(_r(sa, sb), abs=1e-6)
        sa2, sb2 = _smooth_masked(0.8 * a, 6.0, 2.0), _smooth_masked((0.8 * t["mwc1"]).astype(np.float32), 6.0, 2.0)
        assert s["r_s6mwp2"] == pytest.approx(_r(sa2, sb2.astype(np.float64)), abs=1e-6)
        assert s["r_s6mwp1"] > s["r_mwp1"]  # smoothing averages the voxel noise out
        assert "smoothed with FWHM 6 mm on the common grid" in s["s6mwp1_source"]
        assert s["grid_s6mwp1"].startswith(" x ".join(map(str, study["shape"])))
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    r_s = [on_disk["subjects"][n]["r_s6mwp1"] for n in study["truth"]]
    assert on_disk["medians"]["r_s6mwp1"] == pytest.approx(float(np.median(r_s)), abs=1e-12)
    assert on_disk["medians"]["r_s6mwp2"] is not None and on_disk["smoothed"]["fwhm_mm"] == 6.0
    expected = "OldSeg" if grid == "oldseg" else "Normalise default"
    assert expected in on_disk["reference_grid"]["name"] and on_disk["reference_grid"]["expected_bounding_box"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert expected in page and "Raw r compares two registrations voxel by voxel" in page


def test_all_nan_spm_map_is_one_error(tmp_path):
    from vbmkit.errors import ImageError

    study = make_spm_study(tmp_path, n=1)
    path = study["spm"] / "mwc1sub-01_T1w.nii"
    save_volume(path, np.full(study["shape"], np.nan, dtype=np.float32), study["affine"])
    with pytest.raises(ImageError, match=r"mwc1sub-01_T1w\.nii: expected some finite voxel values; all "
                                         r"902629 voxels are NaN \(no data\)"):
        run_compare(study["ours"], spm=study["spm"], out=tmp_path / "out", report=False, device="cpu")
