import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.volumes import tissue_volumes


def test_tissue_volumes_known_counts_anisotropic_voxels():
    probs = torch.zeros(3, 7, 8, 9)
    probs[0, :2] = 1.0  # 2 * 8 * 9 = 144 voxels of GM
    probs[1, 2:4] = 0.5  # 144 voxels at half WM -> 72 voxel volumes
    probs[2, 4] = 1.0  # 72 voxels CSF
    vox_ml = 0.868 * 0.868 * 1.2 / 1000
    v = tissue_volumes(probs, vox_ml)
    assert v["gm_ml"] == pytest.approx(144 * vox_ml)
    assert v["wm_ml"] == pytest.approx(72 * vox_ml)
    assert v["csf_ml"] == pytest.approx(72 * vox_ml)
    assert v["tiv_ml"] == pytest.approx(288 * vox_ml)
    assert v["gm_frac"] + v["wm_frac"] + v["csf_frac"] == pytest.approx(1.0)
    assert v["gm_frac"] == pytest.approx(0.5)


def test_tissue_volumes_clips_and_handles_empty():
    probs = torch.zeros(3, 4, 5, 6)
    probs[0, 0, 0, 0] = 1.7  # interpolation overshoot counts as 1
    v = tissue_volumes(probs, 1.0)
    assert v["gm_ml"] == 1.0 and v["tiv_ml"] == 1.0
    empty = tissue_volumes(torch.zeros(3, 4, 5, 6), 1.0)
    assert empty["tiv_ml"] == 0.0 and empty["gm_frac"] != empty["gm_frac"]  # NaN fraction


def test_tissue_volumes_errors():
    with pytest.raises(ImageError, match=r"expected probabilities of shape \(3, X, Y, Z\); got \(2, 4, 5, 6\)"):
        tissue_volumes(torch.zeros(2, 4, 5, 6), 1.0)
    with pytest.raises(ImageError, match="expected a positive voxel volume in mL; got 0"):
        tissue_volumes(torch.zeros(3, 4, 5, 6), 0)
