"""Exact TFCE (vbmkit.stats.tfce) against a brute-force integral and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import DEVICES
from tests.stats.tfce_reference import brute_tfce, smooth_map
from vbmkit.errors import ConfigError
from vbmkit.stats.tfce import neighbour_offsets, tfce

# the reference is exact too, so both differ only by float64 rounding of sums of ~500 terms;
# 1e-9 relative is far inside the 1e-4
RTOL = 1e-9


def _reference(stat: np.ndarray, tail: str, connectivity: int, e: float = 0.5, h: float = 2.0) -> np.ndarray:
    out = np.zeros(stat.shape)
    if tail in ("positive", "both"):
        out += brute_tfce(stat, e=e, h=h, connectivity=connectivity)
    if tail in ("negative", "both"):
        out -= brute_tfce(-stat, e=e, h=h, connectivity=connectivity)
    return out


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("tail", ["positive", "negative", "both"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_integral(connectivity, tail, seed):
    stat = smooth_map((7, 8, 9), seed=seed, sigma=0.8 + 0.3 * seed)
    expected = _reference(stat, tail, connectivity)
    got = tfce(stat, connectivity=connectivity, tail=tail).numpy()
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL * scale)
    if tail == "positive":
        assert (got[stat <= 0] == 0).all() and (got[stat > 0] > 0).all()
    if tail == "negative":
        assert (got[stat >= 0] == 0).all() and (got[stat < 0] < 0).all()


@pytest.mark.parametrize("e,h", [(0.5, 2.0), (1.0, 1.0), (2.0 / 3.0, 2.5)])
def test_other_exponents_and_ties(e, h):
    rng = np.random.default_rng(4)
    stat = rng.integers(-2, 4, size=(7, 8, 9)).astype(float)  # many ties and plateaus
    np.testing.assert_allclose(tfce(stat, e=e, h=h, connectivity=26).numpy(),
                               _reference(stat, "positive", 26, e, h), rtol=RTOL, atol=1e-12)


def test_isolated_voxel_closed_form():
    stat = np.zeros((7, 8, 9))
    stat[3, 4, 5] = 2.5
    stat[3, 5, 6] = 1.0  # diagonal: a separate cluster under 6-connectivity only
    out = tfce(stat, connectivity=6).numpy()
    assert out[3, 4, 5] == pytest.approx(2.5 ** 3 / 3, rel=1e-12)  # 1^E h^(H+1) / (H+1)
    assert out[3, 5, 6] == pytest.approx(1 / 3, rel=1e-12)
    joined = tfce(stat, connectivity=18).numpy()
    # up to h = 1 both voxels form one cluster of 2, above it the peak is alone
    assert joined[3, 5, 6] == pytest.approx(np.sqrt(2) / 3, rel=1e-12)
    assert joined[3, 4, 5] == pytest.approx(np.sqrt(2) / 3 + (2.5 ** 3 - 1) / 3, rel=1e-12)


def test_batch_equals_single_maps_and_keeps_dtype_shape():
    maps = np.stack([smooth_map((7, 8, 9), seed=s) for s in range(3)])
    batch = tfce(torch.from_numpy(maps).float(), tail="both")
    assert batch.shape == (3, 7, 8, 9) and batch.dtype == torch.float64
    for i in range(3):
        torch.testing.assert_close(batch[i], tfce(maps[i].astype(np.float32), tail="both"))


def test_empty_and_nan_maps():
    assert torch.count_nonzero(tfce(np.full((7, 8, 9), -1.0))) == 0
    stat = smooth_map((7, 8, 9), seed=5)
    stat_nan = stat.copy()
    stat_nan[0] = np.nan  # NaN counts as outside the mask
    stat_zero = stat.copy()
    stat_zero[0] = 0
    torch.testing.assert_close(tfce(stat_nan), tfce(stat_zero))


def test_offsets():
    assert [len(neighbour_offsets(c)) for c in (6, 18, 26)] == [3, 9, 13]


@pytest.mark.parametrize("kwargs,match", [
    ({"connectivity": 8}, "connectivity: expected 6, 18 or 26; got 8"),
    ({"tail": "up"}, "tail: expected one of positive, negative, both; got 'up'"),
    ({"e": 0.0}, "e, h: expected e > 0 and h >= 0; got e=0.0"),
])
def test_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        tfce(np.zeros((7, 8, 9)), **kwargs)


def test_shape_error():
    with pytest.raises(ConfigError, match=r"stat: expected shape \(X, Y, Z\) or \(B, X, Y, Z\); got \(7, 8\)"):
        tfce(np.zeros((7, 8)))


@pytest.mark.parametrize("device", DEVICES)
def test_device_round_trip(device):
    stat = torch.from_numpy(smooth_map((7, 8, 9), seed=6)).to(device)
    out = tfce(stat, connectivity=26)
    assert out.device.type == torch.device(device).type
    np.testing.assert_allclose(out.cpu().numpy(), _reference(stat.cpu().numpy(), "positive", 26),
                               rtol=0, atol=RTOL * float(out.abs().max()))


@pytest.mark.parametrize("connectivity", [6, 26])
def test_larger_quantised_map_with_plateaus(connectivity):
    # 10,560 voxels, values on a 0.125 grid: few distinct levels keep the reference cheap
    # while ties, plateaus and many merges stress the merge tree
    stat = np.round(smooth_map((20, 22, 24), seed=9, sigma=1.5) * 8) / 8
    expected = brute_tfce(stat, connectivity=connectivity)
    np.testing.assert_allclose(tfce(stat, connectivity=connectivity).numpy(), expected, rtol=0,
                               atol=RTOL * expected.max())
