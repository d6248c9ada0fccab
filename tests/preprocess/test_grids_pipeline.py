import numpy as np
import pytest
import torch

from vbmkit.errors import ImageError
from vbmkit.preprocess.grids import deformation_to_mm, downsample, factors_for, grid_at_resolution
from vbmkit.space import Grid, resample


def flipped_grid(shape):
    aff = np.array([[-0.8, 0, 0, 30.0], [0, 1.2, 0, -40.0], [0, 0, 1.0, -10.0], [0, 0, 0, 1]])
    return Grid(shape, aff)


def test_downsample_keeps_integral_and_centres():
    g = flipped_grid((8, 9, 10))
    x = torch.rand(8, 9, 10, generator=torch.Generator().manual_seed(0))
    y, gc = downsample(x, g, (2, 3, 1))
    assert tuple(y.shape) == (4, 3, 10) and gc.shape == (4, 3, 10)
    # block means: integral (sum * voxel volume) is exact when blocks tile the grid
    assert float(y.sum()) * gc.voxel_volume_ml == pytest.approx(float(x.sum()) * g.voxel_volume_ml, rel=1e-5)
    # coarse voxel 0 sits at the mean position of fine voxels 0..1, 0..2, 0
    np.testing.assert_allclose(gc.voxel_to_world(np.zeros(3)), g.voxel_to_world(np.array([0.5, 1.0, 0.0])))
    assert y[1, 2, 4] == pytest.approx(float(x[2:4, 6:9, 4].mean()), rel=1e-5)
    two, _ = downsample(torch.stack([x, 2 * x]), g, 2)
    assert two.shape == (2, 4, 4, 5)
    with pytest.raises(ImageError, match="expected 3 integers >= 1; got"):
        downsample(x, g, (0, 1, 1))
    with pytest.raises(ImageError, match="does not match grid"):
        downsample(x[:7], g, 2)


def test_factors_and_grid_at_resolution():
    g = flipped_grid((8, 9, 10))
    assert factors_for(g, 2.0) == (2, 2, 2)  # 0.8 mm -> 2.5 -> 2; 1.2 -> 1.67 -> 2; 1 -> 2
    g05 = Grid((339, 411, 339), np.diag([0.5, 0.5, 0.5, 1.0]) + np.array([[0, 0, 0, -84], [0, 0, 0, -120], [0, 0, 0, -72], [0, 0, 0, 0]]))
    g1 = grid_at_resolution(g05, 1.0)
    assert g1.shape == (170, 206, 170)
    np.testing.assert_allclose(g1.affine[:3, 3], [-84, -120, -72])
    np.testing.assert_allclose(g1.voxel_size, [1, 1, 1])
    with pytest.raises(ImageError, match="expected a positive voxel size in mm; got 0"):
        grid_at_resolution(g05, 0)


def test_deformation_to_mm_identity_and_affine():
    g = flipped_grid((7, 8, 9))
    ijk = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in g.shape], indexing="ij"), -1)
    shift = np.eye(4)
    shift[:3, 3] = [1.0, -2.0, 3.0]
    mm = deformation_to_mm(ijk, g, shift)
    expected = g.voxel_to_world(ijk.numpy().reshape(-1, 3)) + [1.0, -2.0, 3.0]
    np.testing.assert_allclose(mm.numpy().reshape(-1, 3), expected, atol=1e-4)
    with pytest.raises(ImageError, match=r"expected \(X, Y, Z, 3\)"):
        deformation_to_mm(ijk[..., :2], g, shift)


def test_resample_round_trip_through_affine_keeps_volume():
    # the pipeline moves probabilities native -> template space (through an affine) and back
    g = flipped_grid((20, 18, 22))
    x = torch.zeros(20, 18, 22)
    x[5:15, 4:14, 6:16] = 1.0
    rot = np.eye(4)
    c, s = np.cos(0.1), np.sin(0.1)
    rot[:2, :2] = [[c, -s], [s, c]]
    target = Grid((30, 30, 30), np.diag([0.7, 0.7, 0.7, 1.0]) + np.array([[0, 0, 0, 10], [0, 0, 0, -38], [0, 0, 0, -8], [0, 0, 0, 0]]))
    moved = resample(x, g, target, target_to_source_mm=rot)
    vol_in = float(x.sum()) * g.voxel_volume_ml
    vol_out = float(moved.sum()) * target.voxel_volume_ml
    assert vol_out == pytest.approx(vol_in, rel=0.03)  # trilinear resampling of a block: edge error
