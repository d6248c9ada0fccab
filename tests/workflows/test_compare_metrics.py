"""``run_compare`` on two map sets with a known relation: every r, Dice and ICC in metrics.json
equals an independent numpy/scipy computation (from the files on disk) to 1e-6."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.workflows.compare_fixtures import make_study
from vbmkit.config import GlmConfig
from vbmkit.errors import VbmkitError
from vbmkit.workflows.compare import run_compare

TOL = 1e-6  # the brief's tolerance; float64 sums on both sides agree far closer (~1e-12)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    study = make_study(root, n=12)
    out = root / "out"
    metrics = run_compare(study["ours"], cat12=study["cat12"], out=out, covariates=study["covariates"],
                          id_column="participant_id",
                          glm=GlmConfig(formula="age", contrasts={"age": "age", "neg_age": "-age"}, subsamples=20, fraction=0.8, seed=0),
                          device="cpu", report=False)
    return study, out, metrics


def _ras(path):
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj, dtype=np.float64)


def _icc21(x):
    n, k = x.shape
    g = x.mean()
    msr = k * ((x.mean(1) - g) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(0) - g) ** 2).sum() / (k - 1)
    mse = ((x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + g) ** 2).sum() / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)


def test_metrics_json_written_with_required_keys(compared):
    study, out, metrics = compared
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["matched"] == study["names"]
    assert on_disk["unmatched"] == {"ours_only": ["sub-99_T1w"], "reference_only": []}
    for name in study["names"]:
        for key in ("dice_gm", "dice_wm", "dice_csf", "r_mwp1", "r_mwp2", "tiv_ours_ml", "tiv_cat12_ml"):
            assert isinstance(on_disk["subjects"][name][key], float), key
    for region in ("lSupFroG", "rMidFroG"):
        for tissue in ("gm", "wm"):
            assert set(on_disk["roi"][region][tissue]) >= {"r", "icc", "mean_diff_ml"}
    for c in ("age", "neg_age"):
        assert set(on_disk["contrasts"][c]) >= {"r_median_t", "max_abs_t_ours", "max_abs_t_cat12",
                                                 "dice_suprathreshold"}
    for csv in ("subjects.csv", "roi.csv", "roi_volumes.csv", "contrasts.csv"):
        assert (out / csv).is_file()
    assert len(pd.read_csv(out / "subjects.csv")) == 12


def test_subject_dice_and_r_equal_numpy(compared):
    study, out, metrics = compared
    ours, cat = study["ours"], study["cat12"]
    for name in study["names"]:
        m = metrics["subjects"][name]
        a, b = _ras(ours / name / "mri" / f"p0{name}.nii.gz"), _ras(cat / "mri" / f"p0{name}.nii")
        la, lb = np.clip(np.floor(a + 0.5), 0, 3), np.clip(np.floor(b + 0.5), 0, 3)
        for c, tissue in ((1, "csf"), (2, "gm"), (3, "wm")):
            A, B = la == c, lb == c
            assert m[f"dice_{tissue}"] == pytest.approx(2 * (A & B).sum() / (A.sum() + B.sum()), abs=TOL)
            assert m[f"jaccard_{tissue}"] == pytest.approx((A & B).sum() / (A | B).sum(), abs=TOL)
        for kind in ("mwp1", "mwp2"):
            x, y = _ras(ours / name / "mri" / f"{kind}{name}.nii.gz"), _ras(cat / "mri" / f"{kind}{name}.nii")
            keep = (x + y) / 2 > 0.1
            assert m[f"r_{kind}"] == pytest.approx(stats.pearsonr(x[keep], y[keep])[0], abs=TOL)
        assert 0.2 < m["dice_gm"] < 0.95 and 0.2 < m["r_mwp1"] < 0.99  # a shifted noisy copy: neither 0 nor 1


def test_roi_r_icc_equal_numpy(compared):
    study, out, metrics = compared
    a = study["roi_ours"].set_index(["subject", "region", "tissue"])["volume_ml"]
    b = study["roi_ref"].set_index(["subject", "region", "tissue"])["volume_ml"]
    assert len(metrics["roi"]) == 5
    for region, d in metrics["roi"].items():
        for tissue, v in d.items():
            x = a.xs((region, tissue), level=("region", "tissue")).loc[study["names"]].to_numpy()
            y = b.xs((region, tissue), level=("region", "tissue")).loc[study["names"]].to_numpy()
            assert v["r"] == pytest.approx(stats.pearsonr(x, y)[0], abs=TOL)
            assert v["icc"] == pytest.approx(_icc21(np.stack([x, y], 1)), abs=TOL)
            assert v["mean_diff_ml"] == pytest.approx((x - y).mean(), abs=TOL)


def test_contrast_r_and_dice_equal_numpy(compared):
    study, out, metrics = compared
    for name, c in metrics["contrasts"].items():
        ta = _ras(out / "glm_ours" / name / "t_median.nii.gz")
        tb = _ras(out / "glm_cat12" / name / "t_median.nii.gz")
        mask = (_ras(out / "glm_ours" / "mask.nii.gz") > 0) & (_ras(out / "glm_cat12" / "mask.nii.gz") > 0)
        assert c["r_median_t"] == pytest.approx(stats.pearsonr(ta[mask], tb[mask])[0], abs=TOL)
        assert c["max_abs_t_ours"] == pytest.approx(np.abs(ta).max(), abs=TOL)
        assert c["max_abs_t_cat12"] == pytest.approx(np.abs(tb).max(), abs=TOL)
        thr = c["threshold_ours"]
        A, B = (ta > thr) & mask, (tb > thr) & mask
        if A.sum() + B.sum():
            assert c["dice_suprathreshold"] == pytest.approx(2 * (A & B).sum() / (A.sum() + B.sum()), abs=TOL)
        else:
            assert c["dice_suprathreshold"] is None or np.isnan(c["dice_suprathreshold"])
        assert c["same_draws"] is True and c["n_subjects"] == 12
    assert metrics["contrasts"]["neg_age"]["dice_suprathreshold"] > 0  # the effect is found on both sides
    assert metrics["contrasts"]["neg_age"]["r_median_t"] > 0.5


def test_missing_pieces_are_reported_not_fatal(tmp_path):
    study = make_study(tmp_path, n=4, layout="bids")
    (study["cat12"] / "sub-02" / "anat" / "p0sub-02_T1w.nii").unlink()
    (study["cat12"] / "sub-03" / "anat" / "cat_sub-03_T1w.xml").unlink()
    for f in study["cat12"].rglob("catROI_*"):
        f.unlink()
    shutil.rmtree(study["ours"] / "roi")
    m = run_compare(study["ours"], cat12=study["cat12"], out=tmp_path / "out", report=False, device="cpu")
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["subjects"]["sub-02_T1w"]["dice_gm"] is None
    assert on_disk["subjects"]["sub-02_T1w"]["r_mwp1"] is not None
    assert on_disk["subjects"]["sub-03_T1w"]["tiv_cat12_ml"] is None
    text = " | ".join(m["missing"])
    assert "sub-02_T1w: p0 missing" in text and "cat_sub-03_T1w.xml missing" in text
    assert "contrasts: no covariates" in text


def test_nothing_comparable_is_an_error(tmp_path):
    study = make_study(tmp_path, n=2)
    other = tmp_path / "empty_cat12"
    other.mkdir()
    with pytest.raises(VbmkitError, match="expected subjects present in both"):
        run_compare(study["ours"], cat12=other, out=tmp_path / "out", report=False)
    with pytest.raises(VbmkitError, match="expected exactly one reference"):
        run_compare(study["ours"], cat12=study["cat12"], spm=study["cat12"], out=tmp_path / "out")
    with pytest.raises(VbmkitError, match="got neither"):
        run_compare(study["ours"], out=tmp_path / "out")


def test_compare_config_needs_exactly_one_reference():
    from pydantic import ValidationError

    from vbmkit.config import CompareConfig

    assert CompareConfig(cat12="/data/cat12").spm is None
    with pytest.raises(ValidationError, match="expected exactly one of 'cat12' and 'spm'.*got both"):
        CompareConfig(cat12="/a", spm="/b")
    with pytest.raises(ValidationError, match="got neither"):
        CompareConfig()


def test_unfittable_design_is_reported_not_fatal(tmp_path):
    study = make_study(tmp_path, n=3)
    m = run_compare(study["ours"], cat12=study["cat12"], out=tmp_path / "out", covariates=study["covariates"],
                    id_column="participant_id",
                    glm=GlmConfig(formula="age + C(sex)", contrasts={"age": "age"}, subsamples=10),
                    report=False, device="cpu")
    assert m["contrasts"]["age"]["r_median_t"] is None
    assert any("the design cannot be fitted to the 3 vbmkit maps" in msg for msg in m["missing"])
    assert m["subjects"]["sub-01_T1w"]["dice_gm"] is not None
