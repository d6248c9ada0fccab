"""``run_roi`` on tiny phantom studies with a 7 x 8 x 9 atlas: tables, statistics, bad input."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from vbmkit.errors import ConfigError, GridMismatchError, ImageError, ResourceError
from vbmkit.io.catroi import read_cat12_group_csv
from vbmkit.io.nifti import save_volume
from vbmkit.workflows.roi import find_subject_maps, run_roi

SHAPE = (7, 8, 9)
AFFINE = np.array([[-2.0, 0, 0, 6], [0, 1.5, 0, -5], [0, 0, 1.0, -4], [0, 0, 0, 1]])  # LAS, anisotropic
DV = 2.0 * 1.5 * 1.0 / 1000.0


@pytest.fixture
def atlas_path(tmp_path):
    labels = np.zeros(SHAPE)
    labels[:3, :, :] = 11   # stored voxel order: x index 0..2 (right side in world, LAS)
    labels[4:, :, :] = 12
    labels[3, :4] = 13
    path = tmp_path / "atlas" / "tiny.nii.gz"
    save_volume(path, labels, AFFINE, dtype=np.uint8)
    (tmp_path / "atlas" / "tiny_labels.csv").write_text(
        "region_id,abbr,name,hemisphere\n11,rA,Right A,right\n12,lA,Left A,left\n13,bM,Both M,both\n")
    return str(path), labels


def _study(root, n=6, *, layout="vbmkit", seed=0):
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        name = f"sub-{i + 1:02d}"
        gm, wm = rng.uniform(0, 0.9, SHAPE), rng.uniform(0, 0.6, SHAPE)
        truth[name] = (gm.astype(np.float32), wm.astype(np.float32))
        if layout == "vbmkit":
            d, ext = root / name / "mri", ".nii.gz"
        else:  # CAT12: <dir>/mri/mwp1<name>.nii
            d, ext = root / "mri", ".nii"
        save_volume(d / f"mwp1{name}{ext}", gm, AFFINE)
        save_volume(d / f"mwp2{name}{ext}", wm, AFFINE)
    return truth


def _hand(truth, labels):
    rows = {}
    for name, (gm, wm) in truth.items():
        for tissue, arr in (("gm", gm), ("wm", wm)):
            for rid in (11, 12, 13):
                rows[(name, rid, tissue)] = float(arr[labels == rid].astype(np.float64).sum()) * DV
    return rows


def test_tables_equal_hand_count(tmp_path, atlas_path):
    path, labels = atlas_path
    truth = _study(tmp_path / "prep")
    summary = run_roi([tmp_path / "prep"], out=tmp_path / "roi", atlas=path, progress=False)
    assert summary["subjects"] == 6 and summary["tissues"] == ["gm", "wm"] and summary["regions"] == 3
    long = pd.read_csv(tmp_path / "roi" / "roi_long.csv")
    assert list(long.columns) == ["subject", "atlas", "region_id", "region", "hemisphere", "tissue", "volume_ml"]
    hand = _hand(truth, labels)
    got = long[long["tissue"] != "region"].set_index(["subject", "region_id", "tissue"])["volume_ml"]
    for key, value in hand.items():
        assert abs(got[key] - value) < 1e-6  # CSV keeps 10 significant digits
    wide = pd.read_csv(tmp_path / "roi" / "roi_wide.csv").set_index("subject")
    gm1 = truth["sub-01"][0].astype(np.float64)
    assert abs(wide.loc["sub-01", "total_gm"] - gm1.sum() * DV) < 1e-6
    assert abs(wide.loc["sub-01", "rA_gm"] + wide.loc["sub-01", "lA_gm"] + wide.loc["sub-01", "bM_gm"]
               - wide.loc["sub-01", "atlas_gm"]) < 1e-6
    assert abs(wide.loc["sub-01", "bM_region"] - wide.loc["sub-01", "bM_gm"] - wide.loc["sub-01", "bM_wm"]) < 1e-6
    cat = read_cat12_group_csv(tmp_path / "roi" / "roi_catROI_tiny_Vgm.csv")
    assert (tmp_path / "roi" / "roi_catROI_tiny_Vwm.csv").is_file()
    merged = cat.merge(long[long["tissue"] == "gm"], on=["subject", "region"], suffixes=("", "_long"))
    np.testing.assert_allclose(merged["volume_ml"], merged["volume_ml_long"], rtol=1e-9)
    # the LAS atlas was read in RAS: region 11 (stored x 0..2 = world right) is right
    assert long.set_index("region_id").loc[11, "hemisphere"].iloc[0] == "right"


def test_rerun_skips_and_cat12_layout(tmp_path, atlas_path):
    path, labels = atlas_path
    truth = _study(tmp_path / "cat", layout="cat12")
    first = run_roi([tmp_path / "cat"], out=tmp_path / "roi", atlas=path, progress=False, name="study")
    stamp = os.stat(tmp_path / "roi" / "roi_long.csv").st_mtime_ns
    again = run_roi([tmp_path / "cat"], out=tmp_path / "roi", atlas=path, progress=False, name="study")
    assert again.pop("up_to_date") is True
    assert again == first and os.stat(tmp_path / "roi" / "roi_long.csv").st_mtime_ns == stamp
    assert (tmp_path / "roi" / "study_catROI_tiny_Vgm.csv").is_file()
    long = pd.read_csv(tmp_path / "roi" / "roi_long.csv")
    v = long.set_index(["subject", "region_id", "tissue"])["volume_ml"]
    assert abs(v[("sub-03", 12, "wm")] - _hand(truth, labels)[("sub-03", 12, "wm")]) < 1e-6


def test_roi_statistics_match_statsmodels(tmp_path, atlas_path):
    import statsmodels.api as sm

    path, _ = atlas_path
    _study(tmp_path / "prep", n=12, seed=3)
    rng = np.random.default_rng(5)
    cov = pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(12)],
                        "age": rng.uniform(20, 70, 12), "group": ["a", "b"] * 6})
    cov.to_csv(tmp_path / "cov.csv", index=False)
    run_roi([tmp_path / "prep"], out=tmp_path / "roi", atlas=path, covariates=tmp_path / "cov.csv",
            formula="age + C(group)", contrasts={"age": "age", "grp": "C(group)[T.b]"}, progress=False)
    stats = pd.read_csv(tmp_path / "roi" / "roi_stats.csv")
    assert len(stats) == 2 * 2 * 3  # contrasts x tissues x regions
    wide = pd.read_csv(tmp_path / "roi" / "roi_wide.csv").set_index("subject").loc[cov["participant_id"]]
    X = sm.add_constant(np.column_stack([(cov["age"] - cov["age"].mean()) / cov["age"].std(),
                                         (cov["group"] == "b").astype(float)]))
    ref = sm.OLS(wide["lA_wm"].to_numpy(), X).fit()
    row = stats[(stats["region"] == "lA") & (stats["tissue"] == "wm") & (stats["contrast"] == "age")].iloc[0]
    assert row["stat"] == pytest.approx(ref.tvalues[1], rel=1e-4)  # float32 GLM vs float64 OLS
    assert row["df2"] == 9 and row["p"] == pytest.approx(ref.pvalues[1] / 2 if ref.tvalues[1] > 0
                                                         else 1 - ref.pvalues[1] / 2, rel=1e-3)
    sub = stats[(stats["contrast"] == "grp") & (stats["tissue"] == "gm")]
    assert np.all(sub["q_fdr"] >= sub["p"] - 1e-12)


def _one(tmp_path, gm, *, affine=AFFINE, name="sub-01"):
    d = tmp_path / "bad" / name / "mri"
    save_volume(d / f"mwp1{name}.nii.gz", gm, affine)
    return tmp_path / "bad"


def test_value_errors_and_clipping(tmp_path, atlas_path):
    path, labels = atlas_path
    gm = np.full(SHAPE, 0.5, dtype=np.float32)
    gm[0, 0, 0] = -0.5
    folder = _one(tmp_path, gm)
    with pytest.raises(ImageError, match=r"mwp1sub-01.nii.gz: expected tissue values >= 0; found a minimum of -0.5"):
        run_roi([folder], out=tmp_path / "o1", atlas=path, progress=False)
    gm[0, 0, 0] = -1e-4
    _one(tmp_path, gm)
    with pytest.warns(UserWarning, match="1 slightly negative voxels .* clipped to 0"):
        run_roi([folder], out=tmp_path / "o2", atlas=path, progress=False)
    long = pd.read_csv(tmp_path / "o2" / "roi_long.csv")
    # voxel (0,0,0) stored is region 11; clipped to 0: region 11 holds (n - 1) voxels of 0.5
    n11 = int((labels == 11).sum())
    got = long[(long["region_id"] == 11) & (long["tissue"] == "gm")]["volume_ml"].iloc[0]
    assert abs(got - (n11 - 1) * 0.5 * DV) < 1e-9
    # NaN means 'no data' (SPM12's outside the field of view): left out of the sums, one warning
    gm[0, 0, 0] = np.nan
    gm[-1, -1, -1] = 0.25  # not constant, else the map is refused as constant
    _one(tmp_path, gm)
    with pytest.warns(UserWarning, match=r"mwp1sub-01.nii.gz: 1 NaN voxels of 504 read as 'no data'"):
        run_roi([folder], out=tmp_path / "o3", atlas=path, progress=False)
    long = pd.read_csv(tmp_path / "o3" / "roi_long.csv")
    got = long[(long["region_id"] == 11) & (long["tissue"] == "gm")]["volume_ml"].iloc[0]
    assert abs(got - np.nansum(gm[labels == 11].astype(np.float64)) * DV) < 1e-9
    gm[0, 0, 0] = np.inf
    _one(tmp_path, gm)
    with pytest.raises(ImageError, match=r"mwp1sub-01.nii.gz: expected finite voxel values or NaN \(no data\); found 1 Inf"):
        run_roi([folder], out=tmp_path / "o4", atlas=path, progress=False)


def test_grids_resampled_or_rejected(tmp_path, atlas_path):
    path, _ = atlas_path
    # same space at twice the resolution (half voxels; same world extent): resampled with a warning
    fine = AFFINE.copy()
    fine[:3, :3] /= 2
    varying = np.linspace(0.2, 0.3, 13 * 15 * 17, dtype=np.float32).reshape(13, 15, 17)  # constant maps are refused
    folder = _one(tmp_path, varying, affine=fine)
    with pytest.warns(UserWarning, match="is not the atlas grid .* resampling the maps"):
        summary = run_roi([folder], out=tmp_path / "o1", atlas=path, progress=False)
    assert summary["subjects"] == 1
    rotated = AFFINE.copy()
    c, s = np.cos(0.3), np.sin(0.3)
    rotated[:2, :2] = np.array([[c, -s], [s, c]]) @ AFFINE[:2, :2]
    folder = _one(tmp_path, np.full(SHAPE, 0.25, dtype=np.float32), affine=rotated, name="sub-02")
    with pytest.raises(GridMismatchError, match=r"(?s)mwp1sub-02.nii.gz: expected a map in the atlas's template "
                                                r"space .*rotated or sheared"):
        run_roi([folder / "sub-02"], out=tmp_path / "o2", atlas=path, progress=False)


def test_input_errors(tmp_path, atlas_path):
    path, _ = atlas_path
    _study(tmp_path / "a", n=2)
    _study(tmp_path / "b", n=1)
    with pytest.raises(ImageError, match=r"subject 'sub-01': expected one mwp1 map; given twice"):
        run_roi([tmp_path / "a", tmp_path / "b"], out=tmp_path / "o", atlas=path, progress=False)
    os.remove(tmp_path / "a" / "sub-02" / "mri" / "mwp2sub-02.nii.gz")
    with pytest.raises(ImageError, match=r"mwp2 maps: expected one for every subject or none; 1 subjects"):
        run_roi([tmp_path / "a"], out=tmp_path / "o", atlas=path, progress=False)
    with pytest.raises(ImageError, match=r"--native: expected .*p1sub-01.nii\[.gz\] beside mwp1sub-01"):
        run_roi([tmp_path / "b"], out=tmp_path / "o", atlas=path, native=True, progress=False)
    only_gm = run_roi([tmp_path / "b"], out=tmp_path / "gm", atlas=path, tissues=["gm"], progress=False)
    assert only_gm["tissues"] == ["gm"]
    with pytest.raises(ConfigError, match="tissues: expected 'gm' among them"):
        run_roi([tmp_path / "b"], out=tmp_path / "o", atlas=path, tissues=["wm"], progress=False)
    with pytest.raises(ConfigError, match="expected --covariates, --formula and at least one --contrast"):
        run_roi([tmp_path / "b"], out=tmp_path / "o", atlas=path, formula="age", progress=False)
    os.remove(tmp_path / "atlas" / "tiny_labels.csv")
    with pytest.raises(ResourceError, match="found image .*tiny.nii.gz but no label table"):
        run_roi([tmp_path / "b"], out=tmp_path / "o", atlas=path, progress=False)
    (tmp_path / "x.nii.gz").write_bytes(b"0" * 200)
    with pytest.raises(ImageError, match="expected a modulated tissue map named mwp1<name>"):
        find_subject_maps([tmp_path / "x.nii.gz"])


def test_pairing_by_name_bids_and_mod(tmp_path):
    g = np.zeros(SHAPE, dtype=np.float32)
    save_volume(tmp_path / "d" / "sub-07_mwp1.nii.gz", g, AFFINE)
    save_volume(tmp_path / "d" / "sub-07_mwp2.nii.gz", g, AFFINE)
    save_volume(tmp_path / "m" / "mwp1" / "s8.nii.gz", g, AFFINE)
    save_volume(tmp_path / "m" / "mwp2" / "s8.nii.gz", g, AFFINE)
    save_volume(tmp_path / "m" / "mwp3" / "s8.nii.gz", g, AFFINE)
    subs = find_subject_maps([tmp_path / "d" / "sub-07_mwp1.nii.gz", tmp_path / "m" / "mwp1" / "s8.nii.gz"])
    assert [s.name for s in subs] == ["s8", "sub-07"]
    assert list(subs[0].maps) == ["gm", "wm", "csf"] and subs[1].maps["wm"].name == "sub-07_mwp2.nii.gz"
    # given an mwp2 file only, its mwp1 is found beside it
    subs = find_subject_maps([tmp_path / "d" / "sub-07_mwp2.nii.gz"])
    assert subs[0].maps["gm"].name == "sub-07_mwp1.nii.gz"
