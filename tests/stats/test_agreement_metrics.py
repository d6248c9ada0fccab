"""Agreement metrics on tiny inputs with known answers and against numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from tests.conftest import DEVICES
from vbmkit.stats import agreement as ag

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; their ICC(2,1) = 0.29, ICC(3,1) = 0.71.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_matches_shrout_fleiss_table():
    x = torch.tensor(SHROUT_FLEISS, dtype=torch.float64)
    # The paper prints two decimals, hence the tolerance.
    assert float(ag.icc(x, kind="2,1")) == pytest.approx(0.29, abs=0.005)
    assert float(ag.icc(x, kind="3,1")) == pytest.approx(0.71, abs=0.005)


def _icc_reference(x: np.ndarray) -> tuple[float, float]:
    """ICC(2,1) and ICC(3,1) from the two-way ANOVA table, written out with explicit loops."""
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * sum((x[i].mean() - grand) ** 2 for i in range(n))
    ss_cols = n * sum((x[:, j].mean() - grand) ** 2 for j in range(k))
    ss_total = ((x - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    return ((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n), (msr - mse) / (msr + (k - 1) * mse))


def test_icc_batched_equals_anova_reference():
    rng = np.random.default_rng(3)
    truth = rng.normal(10, 2, size=(5, 9))
    ratings = np.stack([truth, 1.05 * truth + 0.4 + rng.normal(0, 0.5, truth.shape)], axis=-1)  # (5, 9, 2)
    got2 = ag.icc(torch.from_numpy(ratings), kind="2,1").numpy()
    got3 = ag.icc(torch.from_numpy(ratings), kind="3,1").numpy()
    for r in range(5):
        ref2, ref3 = _icc_reference(ratings[r])
        assert got2[r] == pytest.approx(ref2, abs=1e-12)  # float64 throughout
        assert got3[r] == pytest.approx(ref3, abs=1e-12)
    assert (got2 < got3).all()  # the offset lowers absolute agreement only


def test_icc_errors():
    with pytest.raises(ValueError, match="expected ratings"):
        ag.icc(torch.ones(3))
    with pytest.raises(ValueError, match="expected kind '2,1' or '3,1'"):
        ag.icc(torch.ones(3, 2), kind="1,1")


@pytest.mark.parametrize("device", DEVICES)
def test_pearson_r_matches_scipy_with_mask(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 8, 9, generator=g)
    y = 0.7 * x + 0.5 * torch.randn(3, 7, 8, 9, generator=g)
    mask = torch.rand(7, 8, 9, generator=g) > 0.3
    got = ag.pearson_r(x.reshape(3, -1).to(device), y.reshape(3, -1).to(device),
                       mask=mask.reshape(-1).to(device)).cpu()
    for b in range(3):
        ref = stats.pearsonr(x[b][mask].numpy().astype(np.float64), y[b][mask].numpy().astype(np.float64))[0]
        assert float(got[b]) == pytest.approx(ref, abs=1e-10)
    whole = ag.pearson_r(x[0], y[0], mask=mask, dim=None)
    assert float(whole) == pytest.approx(float(got[0]), abs=1e-12)


def test_pearson_r_constant_is_nan_and_shape_error():
    assert torch.isnan(ag.pearson_r(torch.ones(5), torch.arange(5.0)))
    with pytest.raises(ValueError, match="expected two inputs of one shape"):
        ag.pearson_r(torch.ones(5), torch.ones(4))


def test_dice_jaccard_known_sets():
    a = torch.tensor([1, 1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([0, 1, 1, 1, 0], dtype=torch.bool)
    assert float(ag.dice(a, b)) == pytest.approx(2 * 2 / 6)
    assert float(ag.jaccard(a, b)) == pytest.approx(2 / 4)
    assert torch.isnan(ag.dice(torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)))


def test_tissue_probabilities_and_hard_labels_follow_p0_convention():
    p0 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    probs = ag.tissue_probabilities(p0)
    expected = torch.tensor([[0, 0.5, 1, 0.5, 0, 0, 0], [0, 0, 0, 0.5, 1, 0.5, 0], [0, 0, 0, 0, 0, 0.5, 1]],
                            dtype=torch.float64)
    assert torch.equal(probs, expected)
    assert ag.hard_labels(p0).tolist() == [0, 1, 1, 2, 2, 3, 3]


def test_label_agreement_equals_numpy_and_batches():
    rng = np.random.default_rng(1)
    a = np.clip(rng.normal(2, 0.8, (2, 7, 8, 9)), 0, 3)
    b = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 3)
    got = ag.label_agreement(torch.from_numpy(a), torch.from_numpy(b), batched=True)
    one = ag.label_agreement(torch.from_numpy(a[1]), torch.from_numpy(b[1]))
    for s in range(2):
        la, lb = np.clip(np.floor(a[s] + 0.5), 0, 3), np.clip(np.floor(b[s] + 0.5), 0, 3)
        for c in range(3):
            A, B = la == c + 1, lb == c + 1
            assert float(got["dice"][c, s]) == pytest.approx(2 * (A & B).sum() / (A.sum() + B.sum()), abs=1e-12)
            assert float(got["jaccard"][c, s]) == pytest.approx((A & B).sum() / (A | B).sum(), abs=1e-12)
            pa = np.maximum(0, 1 - np.abs(a[s] - (c + 1)))
            pb = np.maximum(0, 1 - np.abs(b[s] - (c + 1)))
            assert float(got["prob_dice"][c, s]) == pytest.approx(2 * (pa * pb).sum() / (pa.sum() + pb.sum()),
                                                                  abs=1e-12)
    assert torch.allclose(one["dice"], got["dice"][:, 1])
    with pytest.raises(ValueError, match="expected two maps of one shape"):
        ag.label_agreement(torch.ones(3, 3), torch.ones(3, 4))


def test_probability_agreement_hard_labels_with_background():
    # voxel 0: background wins (sum 0.3); voxel 1: GM; voxel 2: WM; voxel 3: CSF.
    a = torch.tensor([[0.1, 0.1, 0.0, 0.8], [0.1, 0.7, 0.2, 0.1], [0.1, 0.2, 0.8, 0.1]])
    assert ag.labels_from_probabilities(a).tolist() == [0, 2, 3, 1]
    res = ag.probability_agreement(a, a)
    assert torch.allclose(res["dice"], torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected two \(3, ...\) maps"):
        ag.probability_agreement(a[:2], a[:2])


def test_bland_altman_and_suprathreshold_dice():
    a = torch.tensor([10.0, 12.0, 11.0, 13.0])
    b = torch.tensor([9.0, 12.5, 10.0, 12.0])
    ba = ag.bland_altman(a, b)
    d = np.array([1.0, -0.5, 1.0, 1.0])
    assert float(ba["mean_diff"]) == pytest.approx(d.mean())
    assert float(ba["loa_high"]) == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    t1 = torch.tensor([5.0, 4.0, 1.0, -6.0])
    t2 = torch.tensor([3.5, 2.0, 4.0, -6.0])
    assert float(ag.suprathreshold_dice(t1, t2, 3.0)) == pytest.approx(2 * 1 / (2 + 2))  # negatives never pass
    assert float(ag.suprathreshold_dice(t1, t2, 3.0, threshold_b=1.5)) == pytest.approx(2 * 2 / (2 + 3))


def test_map_agreement_uses_mean_threshold_and_volume():
    a = torch.tensor([0.0, 0.05, 0.5, 0.6, 0.9])
    b = torch.tensor([0.0, 0.3, 0.4, 0.7, 0.8])
    res = ag.map_agreement(a, b, threshold=0.1)
    keep = np.array([False, True, True, True, True])  # mean 0.175 > 0.1 at index 1
    assert int(res["n_voxels"]) == 4
    assert float(res["r"]) == pytest.approx(stats.pearsonr(a.numpy()[keep], b.numpy()[keep])[0], abs=1e-7)
    assert float(ag.volume_ml(torch.full((10,), 0.5), 0.003375)) == pytest.approx(5 * 0.003375)
