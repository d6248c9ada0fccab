import numpy as np
import pytest
import torch

from vbmkit.errors import GridMismatchError, ImageError
from vbmkit.preprocess.smooth import smooth_fwhm
from vbmkit.space import Grid, resample


def _flipped_aniso_affine():
    a = np.diag([-1.5, 2.0, 1.0, 1.0])
    a[:3, 3] = [10.0, -20.0, 5.0]
    return a


def test_grid_units():
    g = Grid((7, 8, 9), _flipped_aniso_affine())
    np.testing.assert_allclose(g.voxel_size, [1.5, 2.0, 1.0])
    assert g.voxel_volume_ml == pytest.approx(3.0 / 1000)
    ijk = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(g.world_to_voxel(g.voxel_to_world(ijk)), ijk)


def test_grid_errors():
    with pytest.raises(ImageError, match="3 positive sizes"):
        Grid((7, 8), np.eye(4))
    with pytest.raises(GridMismatchError, match="a.nii has shape"):
        Grid((7, 8, 9), np.eye(4)).check_same(Grid((7, 8, 10), np.eye(4)), names=("a.nii", "b.nii"))


def test_resample_identity_and_flip():
    g = Grid((7, 8, 9), _flipped_aniso_affine())
    data = torch.rand(7, 8, 9, generator=torch.Generator().manual_seed(0))
    out = resample(data, g, g)
    torch.testing.assert_close(out, data, atol=1e-5, rtol=0)
    # the same world content stored with the first axis flipped
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = 6
    g2 = Grid((7, 8, 9), g.affine @ flip)
    out2 = resample(data, g, g2, mode="nearest")
    torch.testing.assert_close(out2, data.flip(0))


def test_smooth_keeps_integral_and_width():
    vox = (1.0, 2.0, 1.5)
    x = torch.zeros(41, 31, 41)
    x[20, 15, 20] = 1.0
    y = smooth_fwhm(x, 6.0, vox)
    assert float(y.sum()) == pytest.approx(1.0, rel=1e-5)
    # the profile along axis 0 has its half maximum 3 mm (= 3 voxels) from the centre
    prof = y[:, 15, 20]
    half = prof[20] / 2
    assert float(prof[17]) == pytest.approx(float(half), rel=0.05)
