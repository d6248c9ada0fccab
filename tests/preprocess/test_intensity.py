import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.intensity import masked_quantile, normalize_intensity, validate_t1


def test_masked_quantile_matches_numpy_lower():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 8, 9, generator=g)
    mask = x > 0.3
    vals = x[mask].numpy()
    for q in (0.0, 0.5, 0.95, 1.0):
        expected = np.quantile(vals, q, method="nearest")
        # kthvalue picks the order statistic nearest to q (n - 1); ties at .5 may differ by one rank
        assert masked_quantile(x, q, mask) == pytest.approx(expected, abs=float(np.diff(np.sort(vals)).max()))
    with pytest.raises(ImageError, match="expected at least one voxel in the mask"):
        masked_quantile(x, 0.5, torch.zeros_like(mask))


def test_normalize_intensity_scales_brain_percentile_to_one():
    x = torch.zeros(7, 8, 9)
    mask = torch.zeros(7, 8, 9, dtype=torch.bool)
    mask[1:6, 1:7, 1:8] = True
    x[mask] = torch.linspace(0, 1000, int(mask.sum()))
    x[0, 0, 0] = 5000.0  # an outlier outside the mask does not set the scale
    out, scale = normalize_intensity(x, mask, quantile=0.5)
    assert scale == pytest.approx(500.0, rel=0.01)
    assert float(out.max()) == 1.0  # clipped
    out2, _ = normalize_intensity(x, mask, quantile=0.5, clip_max=None)
    assert float(out2[0, 0, 0]) == pytest.approx(5000.0 / scale)
    with pytest.raises(ImageError, match="expected a non-empty mask"):
        normalize_intensity(x, torch.zeros_like(mask))
    with pytest.raises(ImageError, match="expected a positive 95% quantile"):
        normalize_intensity(torch.zeros(7, 8, 9), mask)


def test_validate_t1_accepts_a_normal_image():
    x = torch.rand(16, 17, 18, generator=torch.Generator().manual_seed(1))
    validate_t1(x, (1.0, 0.9, 1.2), source="ok.nii")


@pytest.mark.parametrize("data, voxel, match", [
    (torch.rand(64, 64, 1), (1, 1, 1), r"bad.nii: expected a 3-D image with at least 16 voxels .* got shape \(64, 64, 1\)"),
    (torch.rand(20, 20, 20), (1, 1, 0.01), r"bad.nii: expected voxel sizes between 0.1 and 8.0 mm; got \(1.0, 1.0, 0.01\)"),
    (torch.rand(20, 20, 20), (1, 1, 50), r"voxel sizes between .* got \(1.0, 1.0, 50.0\)"),
    (torch.zeros(20, 20, 20), (1, 1, 1), r"bad.nii: expected a T1 image; every voxel is 0 \(empty image\)"),
    (torch.full((20, 20, 20), 7.0), (1, 1, 1), r"every voxel is 7 \(constant image\)"),
    (-torch.rand(20, 20, 20) - 1, (1, 1, 1), r"expected positive T1 intensities"),
])
def test_validate_t1_errors_name_the_file(data, voxel, match):
    with pytest.raises(ImageError, match=match):
        validate_t1(data, voxel, source="bad.nii")


def test_validate_t1_rejects_nonfinite():
    x = torch.rand(20, 20, 20)
    x[3, 4, 5] = float("inf")
    x[1, 1, 1] = float("nan")
    with pytest.raises(ImageError, match="bad.nii: expected finite voxel values; found 2 NaN/Inf voxels"):
        validate_t1(x, (1, 1, 1), source="bad.nii")
